//! The rootless runtime: everything that runs a process for a build step.
//!
//! A step runs in a fresh user namespace (uid 0 inside is the invoking user;
//! a subordinate id range when the host grants one; for root with
//! CAP_SETUID, as in a podman container, every id of its namespace mapped to
//! itself) with its own mount, pid (where the engine lets a procfs be
//! mounted; otherwise a bind of the caller's /proc and no pid namespace),
//! ipc, uts and optionally network namespaces, on a root filesystem assembled
//! by a snapshotter (kernel overlayfs in the user namespace, or a copy when
//! the kernel cannot). After the step, the snapshot's changes are read back as
//! a list of additions, modifications and whiteouts. Where no user namespace
//! can be made but the caller is root with CAP_SYS_CHROOT (a CI container with
//! the default seccomp profile), a step runs in chroot isolation instead: a
//! directory root entered with chroot(2), no namespace and no mount, on one
//! working tree carried from step to step (the tree snapshotter). Every raw
//! system call goes through `sandbox/sys/`, the crate's one `unsafe`
//! surface. Nothing here knows about Dockerfiles or the build graph.

pub mod detect;
pub mod diff;
pub mod rootfs;
pub mod sandbox;
pub mod snapshot;

pub use rootfs::RootfsSpec;
pub use sandbox::userns::{remove_tree_in_userns, run_in_userns};
pub use sandbox::{
    ExitStatus, Isolation, IsolationRequest, Network, OutputStream, RunOutcome, RunSpec, Sandbox,
    SandboxError, SandboxOptions, sandbox_mount_points,
};
