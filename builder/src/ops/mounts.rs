//! RUN `--mount`s, from the frontend's description to the runtime's: cache
//! and tmpfs mounts as they are, bind mounts of the build context or of a
//! stage's or image's filesystem (prepared by the caller, see
//! [`super::from`]), secrets looked up in `--secret`, ssh sockets from
//! `--ssh`.
//!
//! A bind of the context exposes the context directory as it is on disk
//! (BuildKit filters it through `.dockerignore` first): mounted read-only by
//! default, and never part of the layer.

use std::path::Path;

use frontend::runmount::{MountType, RunMount as FeMount, Sharing};
use runtime::sandbox::run_mounts::{
    BindFrom, BindMount, CacheMount, CacheSharing, RunMount, SecretMount, SecretValue, SshMount,
    TmpfsMount,
};

use crate::options::{SecretSpec, SshSpec};

/// Converts the mounts of one RUN.
/// `from_dirs[n]` is the prepared filesystem of mount `n`'s `from=` (a
/// stage or image), when it has one: layers or a directory for a bind, a
/// directory the host side can read for a cache (it seeds the cache).
pub fn convert(
    mounts: &[FeMount],
    from_dirs: &[Option<BindFrom>],
    context: &Path,
    secrets: &[SecretSpec],
    ssh: &[SshSpec],
) -> anyhow::Result<Vec<RunMount>> {
    let mut out = Vec::new();
    for (n, m) in mounts.iter().enumerate() {
        let from_dir = from_dirs.get(n).cloned().flatten();
        if m.from.is_some()
            && from_dir.is_none()
            && !matches!(m.kind, MountType::Secret | MountType::Ssh)
        {
            return Err(crate::not_supported(&format!(
                "RUN --mount with from={} here",
                m.from.as_deref().unwrap_or("")
            )));
        }
        let target = m.target.clone();
        out.push(match m.kind {
            MountType::Cache => RunMount::Cache(CacheMount {
                id: m.id.clone(),
                target: target
                    .ok_or_else(|| anyhow::anyhow!("RUN --mount=type=cache needs target="))?,
                sharing: match m.sharing {
                    Some(Sharing::Private) => CacheSharing::Private,
                    Some(Sharing::Locked) => CacheSharing::Locked,
                    _ => CacheSharing::Shared,
                },
                from: match &from_dir {
                    None => None,
                    Some(BindFrom::Dir(d)) => Some(d.clone()),
                    Some(BindFrom::Layers(_)) => {
                        anyhow::bail!(
                            "internal: RUN --mount=type=cache,from= needs a directory, not layers"
                        )
                    }
                },
                source: m.source.clone(),
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
                readonly: m.readonly,
            }),
            MountType::Bind => RunMount::Bind(BindMount {
                from: from_dir
                    .clone()
                    .unwrap_or_else(|| BindFrom::Dir(context.to_path_buf())),
                source: m.source.clone(),
                target: target
                    .ok_or_else(|| anyhow::anyhow!("RUN --mount=type=bind needs target="))?,
                readwrite: !m.readonly,
            }),
            MountType::Tmpfs => RunMount::Tmpfs(TmpfsMount {
                target: target
                    .ok_or_else(|| anyhow::anyhow!("RUN --mount=type=tmpfs needs target="))?,
                size: m.size,
            }),
            MountType::Secret => {
                let id = m.id.clone().unwrap_or_default();
                let value = match secrets.iter().find(|s| s.id == id) {
                    None => None,
                    Some(s) => Some(SecretValue(s.value()?)),
                };
                RunMount::Secret(SecretMount {
                    id,
                    target,
                    env: m.env.clone(),
                    required: m.required,
                    mode: m.mode,
                    uid: m.uid,
                    gid: m.gid,
                    value,
                })
            }
            MountType::Ssh => {
                let id = m.id.clone().unwrap_or_else(|| "default".into());
                let socket = ssh
                    .iter()
                    .find(|s| s.id == id)
                    .and_then(SshSpec::agent_or_key);
                RunMount::Ssh(SshMount {
                    id: Some(id),
                    target: target.or_else(|| Some(format!("/run/buildkit/ssh_agent.{n}"))),
                    required: m.required,
                    socket,
                })
            }
        });
    }
    Ok(out)
}
