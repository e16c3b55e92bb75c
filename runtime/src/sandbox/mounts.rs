//! Assembling the step's root filesystem inside its private mount namespace,
//! run by the namespace's pid 1 (proc can only be mounted from inside the new
//! pid namespace) and ending in pivot_root.
//!
//! Every mount lives only in this mount namespace, which dies with pid 1, so
//! no exit path — success, failure, SIGKILL — leaves a mount on the host.
//! Targets are resolved confined to the rootfs ([`inroot`]) so a symlink in
//! the image cannot redirect a mount onto a host path.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::sandbox::inroot::{self, Created};
use crate::sandbox::network::Network;
use crate::sandbox::overlay::OverlaySpec;
use crate::sandbox::procfs::ProcMode;
use crate::sandbox::run_mounts::{PreparedKind, PreparedMount};
use crate::sandbox::sys::{self, mount};

/// How `/` is made.
#[derive(Debug)]
pub(crate) enum RootPlan {
    /// Kernel overlayfs with `userxattr`.
    Overlay(OverlaySpec),
    /// Bind mount of a prepared directory.
    Dir { source: PathBuf },
}

/// Everything pid 1 mounts, computed by the supervisor before fork.
#[derive(Debug)]
pub(crate) struct MountPlan {
    pub root: RootPlan,
    /// Empty directory where the root is assembled before pivot_root.
    pub merged: PathBuf,
    pub network: Network,
    pub proc: ProcMode,
    /// (file outside the rootfs, path inside): hosts, resolv.conf, hostname.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    /// Bytes of the /dev/shm tmpfs.
    pub shm_size: u64,
    pub mounts: Vec<PreparedMount>,
    /// Empty directory on which a private tmpfs for secrets is mounted.
    pub secrets_dir: PathBuf,
}

fn bind(src: &Path, target: &Path, recursive: bool) -> Result<(), String> {
    let s = src
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", src.display()))?;
    let rec = if recursive { libc::MS_REC } else { 0 };
    mount(Some(s), target, None, libc::MS_BIND | rec, None)
}

/// Makes a bind mount (and its submounts) read-only. mount_setattr changes
/// only the read-only bit; the remount fallback must repeat the flags the
/// kernel locked on mounts inherited from the host (nosuid, nodev, …).
pub(crate) fn make_readonly(target: &Path) -> Result<(), String> {
    let t = sys::cpath(target)?;
    if sys::mount_setattr_readonly(&t) == 0 {
        return Ok(());
    }
    let f_flag =
        sys::statvfs_flags(&t).map_err(|e| format!("statvfs {}: {e}", target.display()))?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    for (st_flag, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f_flag & st_flag != 0 {
            flags |= ms;
        }
    }
    mount(None, target, None, flags, None)
}

fn ensure(root: &std::os::fd::OwnedFd, path: &str, dir: bool) -> Result<PathBuf, String> {
    let rel = inroot::clean(path);
    inroot::ensure(root, &rel, dir, &mut Created::default())
}

fn touch(p: &Path) -> Result<(), String> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .map(drop)
        .map_err(|e| format!("creating {}: {e}", p.display()))
}

fn setup_dev(dev: &Path, shm_size: u64) -> Result<(), String> {
    let nosuid_noexec = libc::MS_NOSUID | libc::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        nosuid_noexec,
        Some("mode=755,size=65536"),
    )?;
    // mknod is not allowed in a user namespace: bind the host's nodes.
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let node = dev.join(name);
        touch(&node)?;
        bind(&host, &node, false)?;
    }
    let pts = dev.join("pts");
    let _ = fs::create_dir(&pts);
    // Best effort: a pty is a nicety for a build step, not a requirement.
    if mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        nosuid_noexec,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .is_ok()
    {
        let _ = symlink("pts/ptmx", dev.join("ptmx"));
    }
    let shm = dev.join("shm");
    let _ = fs::create_dir(&shm);
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        nosuid_noexec | libc::MS_NODEV,
        Some(&format!("mode=1777,size={shm_size}")),
    )?;
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(link)).map_err(|e| format!("symlink /dev/{link}: {e}"))?;
    }
    Ok(())
}

fn setup_sys(sys_dir: &Path, network: Network) -> Result<(), String> {
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // sysfs may only be mounted by the owner of the network namespace.
    if network == Network::None && mount(Some("sysfs"), sys_dir, Some("sysfs"), flags, None).is_ok()
    {
        return Ok(());
    }
    bind(Path::new("/sys"), sys_dir, true)?;
    make_readonly(sys_dir)
}

fn mount_one(
    m: &PreparedMount,
    at: &Path,
    secrets_dir: &Path,
    secrets_ready: &mut bool,
    n: usize,
) -> Result<(), String> {
    match &m.kind {
        PreparedKind::Bind {
            source,
            readonly,
            init,
            ..
        } => {
            bind(source, at, true)?;
            if let Some((mode, uid, gid)) = init {
                std::os::unix::fs::chown(at, Some(*uid), Some(*gid)).map_err(|e| {
                    format!("chown {uid}:{gid} on cache mount {}: {e}", at.display())
                })?;
                fs::set_permissions(at, fs::Permissions::from_mode(*mode))
                    .map_err(|e| format!("chmod on cache mount {}: {e}", at.display()))?;
            }
            if *readonly {
                make_readonly(at)?;
            }
        }
        PreparedKind::Layered {
            layers,
            upper_work,
            stage,
            source,
        } => {
            match (upper_work, layers.as_slice()) {
                // overlayfs needs two lowers when it has no upper.
                (None, [only]) => {
                    bind(only, stage, true)?;
                    make_readonly(stage)?;
                }
                // Scratch upper, thrown away after the step: no need to sync it.
                _ => OverlaySpec::new(
                    layers.clone(),
                    upper_work.as_ref().map(|(u, w)| (u.as_path(), w.as_path())),
                    true,
                )?
                .mount(stage)?,
            }
            let staged = inroot::open_root(stage)?;
            let rel: Vec<&str> = source.iter().map(String::as_str).collect();
            let src = inroot::resolve(&staged, &rel)?.ok_or_else(|| {
                format!("mount source /{} not found in its layers", rel.join("/"))
            })?;
            bind(&src, at, true)?;
            if upper_work.is_none() {
                make_readonly(at)?;
            }
        }
        PreparedKind::Tmpfs { size } => {
            let opts = match size {
                Some(s) => format!("mode=755,size={s}"),
                None => "mode=755".into(),
            };
            mount(
                Some("tmpfs"),
                at,
                Some("tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(&opts),
            )?;
        }
        PreparedKind::Secret {
            value,
            mode,
            uid,
            gid,
        } => {
            if !*secrets_ready {
                // Memory only, and visible only in this mount namespace.
                mount(
                    Some("tmpfs"),
                    secrets_dir,
                    Some("tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    Some("mode=700,size=4194304"),
                )?;
                *secrets_ready = true;
            }
            let f = secrets_dir.join(format!("s{n}"));
            fs::write(&f, &value.0).map_err(|e| format!("writing secret file: {e}"))?;
            std::os::unix::fs::chown(&f, Some(*uid), Some(*gid))
                .map_err(|e| format!("chown secret to {uid}:{gid}: {e}"))?;
            fs::set_permissions(&f, fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("chmod secret: {e}"))?;
            bind(&f, at, false)?;
            make_readonly(at)?;
        }
    }
    Ok(())
}

/// Builds the root and pivots into it. Runs as uid 0 of the new user
/// namespace, as pid 1 of the new pid namespace.
pub(crate) fn build_root(plan: &MountPlan) -> Result<(), String> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    match &plan.root {
        RootPlan::Overlay(ov) => ov.mount(&plan.merged).map_err(|e| {
            format!(
                "{e}; kernel overlayfs in a user namespace needs Linux >= 5.11 and an upper \
                     dir on a file system with user xattrs that is not itself overlayfs (use the \
                     native snapshotter otherwise)"
            )
        })?,
        RootPlan::Dir { source } => bind(source, &plan.merged, true)?,
    }
    let root = inroot::open_root(&plan.merged)?;
    setup_dev(&ensure(&root, "/dev", true)?, plan.shm_size)?;
    let proc_dir = ensure(&root, "/proc", true)?;
    match plan.proc {
        ProcMode::Fresh => mount(
            Some("proc"),
            &proc_dir,
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )?,
        // Recursive, so the engine's masks over parts of /proc come along.
        ProcMode::BindCaller => bind(Path::new("/proc"), &proc_dir, true)?,
    }
    setup_sys(&ensure(&root, "/sys", true)?, plan.network)?;
    for (src, target) in &plan.etc_files {
        bind(src, &ensure(&root, target, false)?, false)?;
    }
    let mut secrets_ready = false;
    for (n, m) in plan.mounts.iter().enumerate() {
        let target = format!("/{}", m.target.join("/"));
        let at =
            ensure(&root, &target, m.is_dir).map_err(|e| format!("mount target {target}: {e}"))?;
        mount_one(m, &at, &plan.secrets_dir, &mut secrets_ready, n)
            .map_err(|e| format!("mount at {target}: {e}"))?;
    }
    if secrets_ready {
        // The binds keep the files alive; the staging mount is not needed.
        let c = sys::cpath(&plan.secrets_dir)?;
        sys::umount_detach(&c);
    }
    drop(root);
    let merged = sys::cpath(&plan.merged)?;
    sys::pivot_root_to(&merged)?;
    Ok(())
}
