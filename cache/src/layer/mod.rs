//! Layers: the tar changesets an image is made of.
//!
//! * [`Entry`] — what a layer holds (files, dirs, links, devices, fifos,
//!   whiteouts, opaque markers), plain data the builder constructs.
//! * [`write_layer`] / [`write_dir`] / [`write_layers`] — deterministic
//!   tar (PAX, sorted, whiteouts first, clamped mtimes), compressed with
//!   gzip (parallel members), zstd or nothing, with diff_id and blob digest
//!   computed in the same streaming pass → [`LayerDescriptor`].
//! * [`for_each_entry`] / [`read_entries`] — reading a blob back, any
//!   compression, diff_id verified from the bytes.
//! * [`unpack`] — onto a directory, contained with `openat2`, whiteouts
//!   applied or kept in overlay form, ownership chowned or recorded in
//!   `user.rootlesscontainers`; [`unpack_entries`] writes entries the same
//!   way with no tar in between (a layer directory made from files).

mod batch;
mod compress;
mod entry;
mod error;
mod ownership;
mod path;
mod read;
mod tar_guard;
mod tar_header;
mod unpack;
mod walk;
mod whiteout;
mod write;

pub use batch::{LayerSource, write_layers};
pub use compress::{
    Compression, GZIP_MEMBER_SIZE, LayerDescriptor, LayerSink, MediaFlavor, media_type,
};
pub use entry::{Content, Entry, EntryKind, Meta};
pub use error::{LayerError, Result};
pub use ownership::{OwnerSource, ROOTLESS_XATTR, Record, RecordError};
pub use path::{clean as clean_path, layer_order};
pub use read::{Decompressed, ReadSummary, detect, for_each_entry, read_entries};
pub use tar_guard::{MAX_EXTENSION, MAX_SPARSE_BLOCKS, TarGuard};
pub use unpack::{
    OwnershipMode, UnpackOptions, UnpackStats, WhiteoutMode, unpack, unpack_entries,
    unpack_entries_at, unpack_mapped,
};
pub use walk::write_dir;
pub use whiteout::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
pub use write::{WriteOptions, write_layer};
