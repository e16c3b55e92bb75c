//! `RUN --mount=…` as the frontend parsed it, turned into the runtime's run
//! mounts. What the engine cannot provide yet is refused with
//! `not supported yet: RUN --mount=type=…`, never silently dropped: a step
//! that expects a secret or a cache and runs without it would build a
//! different image.
//!
//! Cache directories live under `<root>/cache-mounts/` (the sandbox's cache
//! dir), outside every layer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::LayerStack;

use frontend::runmount::{MountType, RunMount as FrontMount, Sharing};
use runtime::run_mounts::{
    BindFrom, BindMount, CacheMount, CacheSharing, RunMount, SecretMount, SecretValue, SshMount,
    TmpfsMount,
};

/// What a RUN's mounts may need from outside the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct RunInputs {
    /// The build context directory (`--mount=type=bind` without `from`).
    pub context_dir: Option<PathBuf>,
    /// The final root filesystem of each stage a mount may name, by stage id
    /// (`--mount=type=bind,from=<stage>`); the sandbox stacks its layers.
    /// Stages not listed are refused.
    pub stages: BTreeMap<usize, LayerStack>,
    /// Images a mount may name (`from=<image>`), by the reference as
    /// written (see `Engine::base_image`). Images not listed are refused.
    pub images: BTreeMap<String, LayerStack>,
    /// `--secret id=…`: the secret's bytes by id.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--ssh id=socket`: agent sockets by id (`default` for `--ssh default`).
    pub ssh_sockets: BTreeMap<String, PathBuf>,
    /// Set by the solver to stop the step (another step failed, Ctrl-C):
    /// its whole process tree is killed and the step returns an error.
    pub cancel: Option<runtime::sandbox::CancelToken>,
    /// Kill the step after this long.
    pub timeout: Option<std::time::Duration>,
}

fn unsupported(what: &str) -> anyhow::Error {
    crate::not_supported(&format!("RUN --mount={what}"))
}

/// The runtime mounts for `mounts`. `lowers` gives a stack's layer
/// directories, topmost first (`Engine::lowers`).
pub(crate) fn to_run_mounts(
    mounts: &[FrontMount],
    inputs: &RunInputs,
    lowers: &dyn Fn(&LayerStack) -> anyhow::Result<Vec<PathBuf>>,
) -> anyhow::Result<Vec<RunMount>> {
    let mut out = Vec::with_capacity(mounts.len());
    let mut ssh_index = 0usize;
    for m in mounts {
        let target = || {
            m.target
                .clone()
                .ok_or_else(|| anyhow::anyhow!("RUN --mount=type={:?} has no target", m.kind))
        };
        let mount = match m.kind {
            MountType::Cache => {
                if m.from.is_some() {
                    return Err(unsupported("type=cache,from=…"));
                }
                RunMount::Cache(CacheMount {
                    id: m.id.clone(),
                    target: target()?,
                    sharing: match m.sharing {
                        None | Some(Sharing::Shared) => CacheSharing::Shared,
                        Some(Sharing::Private) => CacheSharing::Private,
                        Some(Sharing::Locked) => CacheSharing::Locked,
                    },
                    from: None,
                    source: None,
                    mode: m.mode,
                    uid: m.uid,
                    gid: m.gid,
                    readonly: m.readonly,
                })
            }
            MountType::Tmpfs => RunMount::Tmpfs(TmpfsMount {
                target: target()?,
                size: m.size,
            }),
            MountType::Bind => {
                let from = match (&m.from, m.from_stage) {
                    (None, _) => BindFrom::Dir(inputs.context_dir.clone().ok_or_else(|| {
                        unsupported("type=bind without a build context directory")
                    })?),
                    (Some(_), Some(stage)) => {
                        let stack = inputs.stages.get(&stage).ok_or_else(|| {
                            unsupported("type=bind,from=<stage> for a stage that was not built")
                        })?;
                        BindFrom::Layers(lowers(stack)?)
                    }
                    (Some(image), None) => {
                        let stack = inputs.images.get(image).ok_or_else(|| {
                            unsupported("type=bind,from=<image> for an image that was not resolved")
                        })?;
                        BindFrom::Layers(lowers(stack)?)
                    }
                };
                RunMount::Bind(BindMount {
                    from,
                    source: m.source.clone(),
                    target: target()?,
                    readwrite: !m.readonly,
                })
            }
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .ok_or_else(|| anyhow::anyhow!("RUN --mount=type=secret has no id"))?;
                let value = inputs.secrets.get(&id).cloned().map(SecretValue);
                RunMount::Secret(SecretMount {
                    id,
                    target: m.target.clone(),
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
                let socket = inputs.ssh_sockets.get(&id).cloned();
                let target = m
                    .target
                    .clone()
                    .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}"));
                ssh_index += 1;
                RunMount::Ssh(SshMount {
                    id: Some(id),
                    target: Some(target),
                    required: m.required,
                    socket,
                })
            }
        };
        out.push(mount);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front(kind: MountType, target: &str) -> FrontMount {
        FrontMount {
            kind,
            target: Some(target.into()),
            source: None,
            from: None,
            from_stage: None,
            id: None,
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            readonly: false,
            required: false,
            size: None,
            env: None,
        }
    }

    fn no_lowers(_: &LayerStack) -> anyhow::Result<Vec<PathBuf>> {
        anyhow::bail!("no lowers in this test")
    }

    #[test]
    fn maps_what_it_can_and_refuses_the_rest() {
        let mut cache = front(MountType::Cache, "/root/.cache");
        cache.id = Some("pip".into());
        cache.sharing = Some(Sharing::Locked);
        let mut secret = front(MountType::Secret, "/run/secrets/tok");
        secret.id = Some("tok".into());
        let inputs = RunInputs {
            secrets: [("tok".to_string(), b"s3cr3t".to_vec())].into(),
            ..Default::default()
        };
        let got = to_run_mounts(
            &[cache, front(MountType::Tmpfs, "/tmp"), secret],
            &inputs,
            &no_lowers,
        )
        .expect("mapped");
        match &got[0] {
            RunMount::Cache(c) => {
                assert_eq!(c.id.as_deref(), Some("pip"));
                assert_eq!(c.sharing, CacheSharing::Locked);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&got[1], RunMount::Tmpfs(t) if t.target == "/tmp"));
        match &got[2] {
            RunMount::Secret(s) => {
                assert_eq!(s.value, Some(SecretValue(b"s3cr3t".to_vec())))
            }
            other => panic!("{other:?}"),
        }

        let mut from_image = front(MountType::Bind, "/src");
        from_image.from = Some("alpine".into());
        let err = to_run_mounts(&[from_image.clone()], &inputs, &no_lowers).expect_err("refused");
        assert!(
            err.to_string()
                .contains("not supported yet: RUN --mount=type=bind,from=<image>"),
            "{err}"
        );
        let err = to_run_mounts(&[front(MountType::Bind, "/src")], &inputs, &no_lowers)
            .expect_err("no ctx");
        assert!(err.to_string().contains("not supported yet"), "{err}");

        // A resolved image is mounted as its stacked layers.
        let with_image = RunInputs {
            images: [("alpine".to_string(), LayerStack::scratch())].into(),
            ..Default::default()
        };
        let got = to_run_mounts(&[from_image], &with_image, &|_| {
            Ok(vec![PathBuf::from("/s/top"), PathBuf::from("/s/bottom")])
        })
        .expect("mapped");
        match &got[0] {
            RunMount::Bind(b) => assert_eq!(
                b.from,
                BindFrom::Layers(vec![PathBuf::from("/s/top"), PathBuf::from("/s/bottom")])
            ),
            other => panic!("{other:?}"),
        }
    }
}
