//! Layer diffs: what a build step changed in its root filesystem.
//!
//! Two producers, one result. The overlay snapshotter's changes are exactly
//! its upper directory, so [`diff_overlay_upper`] walks only that directory and
//! translates overlayfs' markers (0/0 character-device whiteouts, the
//! `user.overlay.whiteout` xattr, `user.overlay.opaque`) into [`Change`]s.
//! The native (copy) snapshotter has no upper directory, so [`diff_trees`]
//! compares its working tree against the lower layers by metadata. Both look
//! the lower layers up through one [`LowerView`], and both finish with
//! [`apply_excludes`], which drops what the sandbox itself mounted. The same
//! step therefore gives the same list whichever snapshotter ran it.
//!
//! Everything here reads the file system with the caller's credentials; run
//! it inside the build's user namespace so subordinate-id files are readable
//! and reported ids are container ids.

mod base_inodes;
mod change;
mod compare;
mod error;
mod exclude;
mod hardlinks;
mod lower_view;
mod meta;
pub(crate) mod overlay_form;
pub(crate) mod path_bytes;
mod upper;

pub use change::{Change, ChangeKind, Entry, EntryType, Timestamp, Xattr};
pub use compare::{BaseInodes, diff_trees};
pub use error::DiffError;
pub(crate) use error::permission_hint as permission_hint_for;
pub use exclude::apply_excludes;
pub use lower_view::{LowerEntry, LowerView};
pub(crate) use meta::read_xattrs;
pub use upper::diff_overlay_upper;
