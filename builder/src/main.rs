//! `strata`: build container images from Dockerfiles as an ordinary user,
//! with no daemon. This file only tunes the allocator and hands the command
//! line to [`builder::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    fixed_mmap_threshold();
    builder::cli::main()
}

/// Layer buffers of a few MiB (gzip members, upload chunks) are allocated
/// on one thread and freed on another. glibc raises its mmap threshold to
/// the size of the first such buffer freed, after which they come from
/// per-thread arenas that keep them once freed: a push of four 32 MiB
/// layers peaked at 130–180 MiB instead of ~85. A fixed threshold maps each
/// big buffer on its own and returns it to the system when it is freed.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning, and runs before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
