//! `RUN --mount=…`: what a step may mount, and turning those requests into
//! concrete mounts before the sandbox starts.
//!
//! Everything here lives outside the rootfs and its upper dir, so nothing a
//! mount holds can end up in a layer: cache mounts are directories under the
//! caller's cache directory (in the store), bind mounts come from a
//! directory the caller names (a stage's rootfs, an image, the context) and
//! are read-only unless `rw` (then writes go to a throw-away overlay), tmpfs
//! is memory, secrets are written to a tmpfs that only exists inside the
//! sandbox's private mount namespace, and the ssh agent socket is bind-mounted.
//! The sandbox creates the mount points without touching the upper dir (see
//! `sandbox::stubs`).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::idmap::{IdMapping, NEED_RANGE_HINT};
use crate::sandbox::inroot;

/// Secret bytes. `Debug` never shows them, so a logged `RunSpec` leaks nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub Vec<u8>);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<{} bytes redacted>)", self.0.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    /// Concurrent steps use the same directory.
    #[default]
    Shared,
    /// A step that finds the directory in use gets another instance.
    Private,
    /// Steps take turns (an exclusive file lock held for the whole run).
    Locked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    /// Defaults to the target.
    pub id: Option<String>,
    pub target: String,
    pub sharing: CacheSharing,
    /// A directory (a stage's rootfs) that seeds a new cache, with `source`
    /// as the sub path in it.
    pub from: Option<PathBuf>,
    pub source: Option<String>,
    /// Mode and owner (ids inside the sandbox) of a newly created cache dir.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub readonly: bool,
}

/// What a bind mount's `from=` names, as the caller has it on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindFrom {
    /// A plain directory (the build context, a native snapshot).
    Dir(PathBuf),
    /// The layers of an overlay snapshot (a stage or an image), topmost
    /// first; the sandbox stacks them (read-only) inside its namespace.
    Layers(Vec<PathBuf>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub from: BindFrom,
    /// Path inside `from` (resolved confined to it); default its root.
    pub source: Option<String>,
    pub target: String,
    /// Writable, with writes discarded after the step.
    pub readwrite: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    pub target: String,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    pub id: String,
    /// Default `/run/secrets/<id>` (only when `env` is unset).
    pub target: Option<String>,
    /// Expose the secret as this environment variable instead of a file.
    pub env: Option<String>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The content the caller looked up for `id`; `None` if not provided.
    pub value: Option<SecretValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshMount {
    pub id: Option<String>,
    /// Default `/run/buildkit/ssh_agent.0`.
    pub target: Option<String>,
    pub required: bool,
    /// The agent socket (the caller's `$SSH_AUTH_SOCK` or `--ssh id=path`).
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    Cache(CacheMount),
    Bind(BindMount),
    Tmpfs(TmpfsMount),
    Secret(SecretMount),
    Ssh(SshMount),
}

/// Where a prepared mount's content comes from.
#[derive(Debug)]
pub(crate) enum PreparedKind {
    /// A bind mount; `init` = (mode, uid, gid) to apply to a fresh cache dir.
    Bind {
        source: PathBuf,
        readonly: bool,
        init: Option<(u32, u32, u32)>,
        /// A cache mount's directory (chroot isolation moves it in and back).
        cache: bool,
    },
    /// The union of `layers` (topmost first), read-only or with a scratch
    /// upper whose writes are thrown away, staged at `stage`; `source`
    /// (resolved inside the union) is what gets bound on the target.
    Layered {
        layers: Vec<PathBuf>,
        upper_work: Option<(PathBuf, PathBuf)>,
        stage: PathBuf,
        source: Vec<String>,
    },
    Tmpfs {
        size: Option<u64>,
    },
    /// A file on the sandbox-private tmpfs.
    Secret {
        value: SecretValue,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

#[derive(Debug)]
pub(crate) struct PreparedMount {
    /// Cleaned target components inside the rootfs.
    pub target: Vec<String>,
    pub is_dir: bool,
    pub kind: PreparedKind,
}

/// The concrete mounts of one step, plus what must live as long as the step.
#[derive(Debug, Default)]
pub(crate) struct PreparedMounts {
    pub mounts: Vec<PreparedMount>,
    pub env: Vec<(String, String)>,
    /// Cache locks, released when the step ends.
    pub locks: Vec<File>,
}

pub(crate) struct MountContext<'a> {
    pub cache_dir: Option<&'a Path>,
    /// The step's private scratch directory (not inside any rootfs).
    pub run_dir: &'a Path,
    /// The user namespace's mapping; `None` in chroot isolation, where
    /// every id exists.
    pub mapping: Option<&'a IdMapping>,
    /// Every cache mount takes its cache exclusively (`sharing=shared` acts
    /// as `locked`): chroot isolation moves the directory into the step's
    /// root, so two steps cannot hold it at once.
    pub exclusive_caches: bool,
}

/// The in-rootfs path and kind (dir or file) of each mount's target, without
/// preparing anything: what the sandbox must create as mount points.
pub fn mount_targets(mounts: &[RunMount]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for m in mounts {
        match m {
            RunMount::Cache(c) => out.push((c.target.clone(), true)),
            RunMount::Tmpfs(t) => out.push((t.target.clone(), true)),
            RunMount::Bind(b) => out.push((b.target.clone(), bind_source_is_dir(b))),
            RunMount::Secret(s) => {
                if let Some(t) = secret_target(s) {
                    out.push((t, false))
                }
            }
            RunMount::Ssh(s) => out.push((ssh_target(s), false)),
        }
    }
    out
}

fn secret_target(s: &SecretMount) -> Option<String> {
    match (&s.target, &s.env) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(format!("/run/secrets/{}", s.id)),
    }
}

fn ssh_target(s: &SshMount) -> String {
    s.target
        .clone()
        .unwrap_or_else(|| "/run/buildkit/ssh_agent.0".into())
}

fn target_components(t: &str) -> Result<Vec<String>, String> {
    let c = inroot::clean(t);
    if c.is_empty() {
        return Err(format!(
            "mount target {t:?} is the root directory; mount somewhere below /"
        ));
    }
    Ok(c.into_iter().map(str::to_owned).collect())
}

fn resolve_source(from: &Path, source: Option<&str>) -> Result<PathBuf, String> {
    let root = inroot::open_root(from)?;
    inroot::resolve(&root, &inroot::clean(source.unwrap_or("/")))?.ok_or_else(|| {
        format!(
            "mount source {} not found in {}",
            source.unwrap_or("/"),
            from.display()
        )
    })
}

fn check_ids(mapping: Option<&IdMapping>, what: &str, uid: u32, gid: u32) -> Result<(), String> {
    if mapping.is_none_or(|m| m.has_uid(uid) && m.has_gid(gid)) {
        Ok(())
    } else {
        Err(format!(
            "{what} asks for owner {uid}:{gid}, but {NEED_RANGE_HINT}"
        ))
    }
}

/// Escapes a cache id into one safe file name.
fn cache_key(id: &str) -> String {
    let mut out = String::new();
    for (i, b) in id.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn lock(path: &Path, op: libc::c_int) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    loop {
        if crate::sandbox::sys::flock(f.as_raw_fd(), op) == 0 {
            return Ok(f);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Copies a tree (files, dirs, symlinks, modes), seeding a cache from `from`.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)
    } else if meta.is_dir() {
        fs::create_dir_all(dst)?;
        for e in fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
    } else if meta.is_file() {
        fs::copy(src, dst).map(|_| ())
    } else {
        Ok(()) // devices, fifos and sockets are not seeded
    }
}

fn prepare_cache(
    c: &CacheMount,
    ctx: &MountContext<'_>,
    out: &mut PreparedMounts,
) -> Result<(), String> {
    let root = ctx
        .cache_dir
        .ok_or("cache mounts need a cache directory in the store: set SandboxOptions::cache_dir")?;
    let id = c.id.clone().unwrap_or_else(|| c.target.clone());
    let dir = root.join(cache_key(&id));
    fs::create_dir_all(&dir).map_err(|e| format!("creating cache dir {}: {e}", dir.display()))?;
    let lock_err = |e: io::Error| format!("locking cache {id:?}: {e}");
    let (data, lockf) = match c.sharing {
        CacheSharing::Shared => (
            dir.join("data"),
            lock(
                &dir.join("data.lock"),
                if ctx.exclusive_caches {
                    libc::LOCK_EX
                } else {
                    libc::LOCK_SH
                },
            )
            .map_err(lock_err)?,
        ),
        CacheSharing::Locked => (
            dir.join("data"),
            lock(&dir.join("data.lock"), libc::LOCK_EX).map_err(lock_err)?,
        ),
        CacheSharing::Private => {
            let mut found = None;
            for n in 0..256 {
                let name = if n == 0 {
                    "data".to_string()
                } else {
                    format!("data-{n}")
                };
                match lock(
                    &dir.join(format!("{name}.lock")),
                    libc::LOCK_EX | libc::LOCK_NB,
                ) {
                    Ok(f) => {
                        found = Some((dir.join(name), f));
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => continue,
                    Err(e) => return Err(lock_err(e)),
                }
            }
            found.ok_or_else(|| format!("cache {id:?}: 256 private instances are in use"))?
        }
    };
    out.locks.push(lockf);
    let mut init = None;
    if !data.exists() {
        let (mode, uid, gid) = (
            c.mode.unwrap_or(0o755),
            c.uid.unwrap_or(0),
            c.gid.unwrap_or(0),
        );
        check_ids(ctx.mapping, &format!("cache mount {}", c.target), uid, gid)?;
        let tmp = dir.join(format!(
            ".new-{}-{:?}",
            crate::sandbox::sys::getpid(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        match &c.from {
            Some(from) => {
                let src = resolve_source(from, c.source.as_deref())?;
                copy_tree(&src, &tmp)
                    .map_err(|e| format!("seeding cache {id:?} from {}: {e}", src.display()))?;
            }
            None => fs::create_dir(&tmp)
                .map_err(|e| format!("creating cache {}: {e}", tmp.display()))?,
        }
        match fs::rename(&tmp, &data) {
            Ok(()) => init = Some((mode, uid, gid)),
            Err(_) if data.exists() => {
                let _ = fs::remove_dir_all(&tmp); // another step created it first
            }
            Err(e) => return Err(format!("creating cache {}: {e}", data.display())),
        }
    }
    out.mounts.push(PreparedMount {
        target: target_components(&c.target)?,
        is_dir: true,
        kind: PreparedKind::Bind {
            source: data,
            readonly: c.readonly,
            init,
            cache: true,
        },
    });
    Ok(())
}

/// Whether a bind source is a directory. For layers, a lexical look-up from
/// the top (good enough to pick a mount point's kind; the sandbox resolves
/// the real path inside the union).
fn bind_source_is_dir(b: &BindMount) -> bool {
    match &b.from {
        BindFrom::Dir(d) => resolve_source(d, b.source.as_deref())
            .map(|p| p.is_dir())
            .unwrap_or(true),
        BindFrom::Layers(layers) => {
            let rel = inroot::clean(b.source.as_deref().unwrap_or("/")).join("/");
            layers
                .iter()
                .find_map(|l| fs::symlink_metadata(l.join(&rel)).ok())
                .is_none_or(|m| m.is_dir())
        }
    }
}

fn prepare_bind(b: &BindMount, scratch: PathBuf) -> Result<PreparedMount, String> {
    let target = target_components(&b.target)?;
    let mkdirs = |dirs: &[&Path]| -> Result<(), String> {
        for p in dirs {
            fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        }
        Ok(())
    };
    let (upper, work, stage) = (
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("stage"),
    );
    let kind = match &b.from {
        BindFrom::Layers(layers) => {
            if layers.is_empty() {
                return Err(format!("bind mount at {}: no layers to mount", b.target));
            }
            mkdirs(&[&stage])?;
            let upper_work = if b.readwrite {
                mkdirs(&[&upper, &work])?;
                Some((upper, work))
            } else {
                None
            };
            let source = inroot::clean(b.source.as_deref().unwrap_or("/"));
            PreparedKind::Layered {
                layers: layers.clone(),
                upper_work,
                stage,
                source: source.into_iter().map(str::to_owned).collect(),
            }
        }
        BindFrom::Dir(from) => {
            let src = resolve_source(from, b.source.as_deref())?;
            if b.readwrite && src.is_dir() {
                mkdirs(&[&upper, &work, &stage])?;
                PreparedKind::Layered {
                    layers: vec![src],
                    upper_work: Some((upper, work)),
                    stage,
                    source: Vec::new(),
                }
            } else if b.readwrite {
                fs::copy(&src, &scratch).map_err(|e| format!("copying {}: {e}", src.display()))?;
                PreparedKind::Bind {
                    source: scratch,
                    readonly: false,
                    init: None,
                    cache: false,
                }
            } else {
                PreparedKind::Bind {
                    source: src,
                    readonly: true,
                    init: None,
                    cache: false,
                }
            }
        }
    };
    Ok(PreparedMount {
        target,
        is_dir: bind_source_is_dir(b),
        kind,
    })
}

/// Resolves every mount of a step. Errors say which mount and what to do.
pub(crate) fn prepare(
    mounts: &[RunMount],
    ctx: &MountContext<'_>,
) -> Result<PreparedMounts, String> {
    let mut out = PreparedMounts::default();
    for (i, m) in mounts.iter().enumerate() {
        match m {
            RunMount::Cache(c) => prepare_cache(c, ctx, &mut out)?,
            RunMount::Bind(b) => {
                let mount = prepare_bind(b, ctx.run_dir.join(format!("bind-{i}")))?;
                out.mounts.push(mount);
            }
            RunMount::Tmpfs(t) => out.mounts.push(PreparedMount {
                target: target_components(&t.target)?,
                is_dir: true,
                kind: PreparedKind::Tmpfs { size: t.size },
            }),
            RunMount::Secret(s) => {
                let Some(value) = &s.value else {
                    if s.required {
                        return Err(format!(
                            "secret {:?} is required but was not provided; pass --secret id={},src=<file>",
                            s.id, s.id
                        ));
                    }
                    continue;
                };
                if let Some(name) = &s.env {
                    let text = String::from_utf8(value.0.clone()).map_err(|_| {
                        format!(
                            "secret {:?} is not UTF-8 text, so it cannot be exposed as env {name}",
                            s.id
                        )
                    })?;
                    out.env.push((name.clone(), text));
                }
                if let Some(t) = secret_target(s) {
                    let (uid, gid) = (s.uid.unwrap_or(0), s.gid.unwrap_or(0));
                    check_ids(ctx.mapping, &format!("secret {:?}", s.id), uid, gid)?;
                    out.mounts.push(PreparedMount {
                        target: target_components(&t)?,
                        is_dir: false,
                        kind: PreparedKind::Secret {
                            value: value.clone(),
                            mode: s.mode.unwrap_or(0o400),
                            uid,
                            gid,
                        },
                    });
                }
            }
            RunMount::Ssh(s) => {
                let Some(sock) = &s.socket else {
                    if s.required {
                        return Err(format!(
                            "ssh mount {:?} needs an agent socket: start ssh-agent (SSH_AUTH_SOCK) or pass --ssh default=<socket>",
                            s.id.as_deref().unwrap_or("default")
                        ));
                    }
                    continue;
                };
                if !sock.exists() {
                    return Err(format!(
                        "ssh agent socket {} does not exist",
                        sock.display()
                    ));
                }
                let t = ssh_target(s);
                out.env.push(("SSH_AUTH_SOCK".into(), t.clone()));
                out.mounts.push(PreparedMount {
                    target: target_components(&t)?,
                    is_dir: false,
                    kind: PreparedKind::Bind {
                        source: sock.clone(),
                        readonly: false,
                        init: None,
                        cache: false,
                    },
                });
            }
        }
    }
    // Parents before children: /a must be mounted before /a/b.
    out.mounts.sort_by_key(|m| m.target.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_are_single_safe_names() {
        assert_eq!(cache_key("go-build"), "go-build");
        assert_eq!(cache_key("/root/.cache"), "%2Froot%2F.cache");
        assert_eq!(cache_key(".."), "%2E.");
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = SecretValue(b"hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn missing_required_secret_is_explained() {
        let d = tempfile::tempdir().unwrap();
        let m = IdMapping::Single { uid: 1, gid: 1 };
        let ctx = MountContext {
            cache_dir: None,
            run_dir: d.path(),
            mapping: Some(&m),
            exclusive_caches: false,
        };
        let s = RunMount::Secret(SecretMount {
            id: "tok".into(),
            target: None,
            env: None,
            required: true,
            mode: None,
            uid: None,
            gid: None,
            value: None,
        });
        let e = prepare(&[s], &ctx).unwrap_err();
        assert!(e.contains("--secret id=tok"), "{e}");
    }
}
