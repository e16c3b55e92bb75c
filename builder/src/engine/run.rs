//! RUN: a process on top of a stack, its changes as a new layer.
//!
//! The order matters and follows the runtime's contract
//! (`runtime::snapshot` docs): `prepare` a writable snapshot over the lowers,
//! run the process in the sandbox, then in ONE user-namespace child `diff`
//! (excluding what the sandbox mounted), write the layer tar from the
//! changes (their file contents are in the active snapshot and readable only
//! there) and only then `commit` (which moves those files). The parent
//! compresses the tar into the store and renames the committed snapshot to
//! its chain-ID name, where it serves as a lower of the next step.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;

use anyhow::Context as _;
use frontend::{ExecOp, NetworkMode, Security};
use runtime::run_in_userns;
use runtime::sandbox::{ExitStatus, Network, RunSpec, sandbox_mount_points};

use super::changes::to_entries;
use super::layer_blob::{TarOutcome, write_tar};
use super::mounts::{RunInputs, to_run_mounts};
use super::snapshots::temp_key;
use super::{Engine, LayerResult};

/// How many trailing output lines a failure carries.
const TAIL_LINES: usize = 10;

/// A RUN whose command exited unsuccessfully. Returned inside the
/// `anyhow::Error` of [`Engine::run`]; `downcast_ref::<StepFailed>()` gives
/// the details to a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailed {
    /// The command line as run.
    pub argv: Vec<String>,
    pub exit: ExitStatus,
    /// The last lines it printed (stdout and stderr interleaved), oldest
    /// first.
    pub last_lines: Vec<String>,
    /// Why it may have failed when the sandbox has only one id (a `chown`).
    pub hint: Option<&'static str>,
}

impl StepFailed {
    /// The exit code, if it exited rather than being killed.
    pub fn code(&self) -> Option<i32> {
        match self.exit {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exit = match self.exit {
            ExitStatus::Code(c) => format!("exit code: {c}"),
            ExitStatus::Signal(s) => format!("killed by signal {s}"),
        };
        write!(
            f,
            "process {:?} did not complete successfully: {exit}",
            self.argv.join(" ")
        )?;
        if !self.last_lines.is_empty() {
            write!(f, "\nlast output:")?;
            for l in &self.last_lines {
                write!(f, "\n  {l}")?;
            }
        }
        if let Some(h) = self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StepFailed {}

impl Engine {
    /// Runs `exec` on `stack` and returns the layer of what it changed.
    /// Output lines (stdout and stderr, without newlines) go to `output` as
    /// they come. A non-zero exit is an error holding a [`StepFailed`].
    pub fn run(
        &self,
        stack: &super::LayerStack,
        exec: &ExecOp,
        inputs: &RunInputs,
        output: &mut dyn FnMut(&str),
    ) -> anyhow::Result<LayerResult> {
        if exec.security == Some(Security::Insecure) {
            return Err(crate::not_supported("RUN --security=insecure"));
        }
        let mut mounts = to_run_mounts(&exec.mounts, inputs, &|s| self.lowers(s))?;
        let pipes = self.inline_files(&exec.inline_files)?;
        if let Some(p) = &pipes {
            mounts.push(p.mount());
        }
        let res = self.run_with(stack, exec, mounts, inputs, output);
        if let Some(p) = pipes {
            p.remove();
        }
        res
    }

    fn run_with(
        &self,
        stack: &super::LayerStack,
        exec: &ExecOp,
        mounts: Vec<runtime::run_mounts::RunMount>,
        inputs: &RunInputs,
        output: &mut dyn FnMut(&str),
    ) -> anyhow::Result<LayerResult> {
        let lowers = self.lowers(stack)?;
        let snap = &*self.snapshotter;
        let mapping = self.sandbox.mapping();
        let key = temp_key("run");
        let active = run_in_userns(mapping, || snap.prepare(&key, &lowers))
            .context("preparing the step's root filesystem")?;
        let cleanup = || {
            let _ = run_in_userns(mapping, || snap.remove(&key));
        };

        let mut spec = RunSpec::new(active.rootfs.clone(), exec.argv.clone());
        spec.env = exec.env.clone();
        spec.env.extend(exec.proxy_env.iter().cloned());
        spec.cwd = if exec.cwd.is_empty() {
            "/".into()
        } else {
            exec.cwd.clone()
        };
        spec.user = exec.user.clone();
        spec.network = match exec.network {
            Some(NetworkMode::None) => Network::None,
            Some(NetworkMode::Host) | Some(NetworkMode::Default) | None => Network::Host,
        };
        spec.mounts = mounts;
        spec.cancel = inputs.cancel.clone();
        spec.timeout = inputs.timeout;

        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        let res = self.sandbox.run(&spec, &mut |_stream, line| {
            let text = String::from_utf8_lossy(line);
            output(&text);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text.into_owned());
        });
        let outcome = match res {
            Ok(o) => o,
            Err(e) => {
                cleanup();
                return Err(
                    anyhow::Error::new(e).context(format!("running {:?}", exec.argv.join(" ")))
                );
            }
        };
        if !outcome.exit.success() {
            cleanup();
            return Err(StepFailed {
                argv: exec.argv.clone(),
                exit: outcome.exit,
                last_lines: tail.into_iter().collect(),
                hint: self.sandbox.single_mapping_hint(),
            }
            .into());
        }

        let excludes: Vec<PathBuf> = sandbox_mount_points(&spec.mounts)
            .into_iter()
            .map(|p| PathBuf::from(p.path))
            .collect();
        let tar = self.scratch_tar();
        let epoch = self.opts.source_date_epoch;
        let written = run_in_userns(mapping, || -> Result<TarOutcome, String> {
            let changes = snap.diff(&active, &excludes).map_err(|e| e.to_string())?;
            let entries = to_entries(&changes)?;
            let out = write_tar(entries, &tar, epoch)?;
            if out.entries > 0 {
                snap.commit(&active, &changes).map_err(|e| e.to_string())?;
            }
            Ok(out)
        });
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                cleanup();
                let _ = std::fs::remove_file(&tar);
                return Err(anyhow::Error::new(e).context("reading the step's changes"));
            }
        };
        if written.entries == 0 {
            cleanup();
            return Ok(LayerResult::unchanged(stack));
        }
        let stored = self.store_tar(&tar, &written.diff_id);
        let (descriptor, diff_id) = match stored {
            Ok(v) => v,
            Err(e) => {
                cleanup();
                return Err(e.context("storing the step's layer"));
            }
        };
        let new_stack = stack.with_layer(descriptor, diff_id);
        let layer = new_stack
            .layers()
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("internal: a stack with a new layer is empty"))?;
        let (dir, layer_dir) = self.layer_dir_of(&layer.chain_id);
        let published = {
            let _lock = self
                .store
                .lock_key(&format!(
                    "snapshot {}",
                    super::snapshot_key(&layer.chain_id)
                ))
                .context("locking a snapshot directory")?;
            if layer_dir.is_dir() {
                cleanup();
                Ok(())
            } else {
                self.publish(&active.dir, &dir)
            }
        };
        if let Err(e) = published {
            cleanup();
            return Err(e.context("keeping the step's snapshot"));
        }
        Ok(LayerResult {
            stack: new_stack,
            layer: Some(layer),
            snapshot_dir: Some(layer_dir),
            empty: false,
        })
    }
}

/// The directory where a RUN's heredoc scripts are mounted (read-only), as
/// BuildKit does.
const PIPES_DIR: &str = "/dev/pipes";

/// A RUN's heredoc script files, written to scratch and bind-mounted at
/// [`PIPES_DIR`]. Outside every snapshot, so nothing of them reaches a layer.
struct InlineDir(PathBuf);

impl InlineDir {
    fn mount(&self) -> runtime::run_mounts::RunMount {
        runtime::run_mounts::RunMount::Bind(runtime::run_mounts::BindMount {
            from: runtime::run_mounts::BindFrom::Dir(self.0.clone()),
            source: None,
            target: PIPES_DIR.into(),
            readwrite: false,
        })
    }

    fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Engine {
    /// Writes `files` (absolute paths directly under [`PIPES_DIR`]) into a
    /// fresh scratch directory; `None` when there are none.
    fn inline_files(&self, files: &[frontend::InlineFile]) -> anyhow::Result<Option<InlineDir>> {
        use std::os::unix::fs::PermissionsExt;
        if files.is_empty() {
            return Ok(None);
        }
        let dir = self.store.scratch_dir().join(temp_key("pipes"));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let out = InlineDir(dir);
        for f in files {
            let name = std::path::Path::new(&f.path)
                .strip_prefix(PIPES_DIR)
                .ok()
                .filter(|n| n.components().count() == 1)
                .map(std::path::Path::to_path_buf);
            let Some(name) = name else {
                out.remove();
                return Err(crate::not_supported(&format!(
                    "a RUN heredoc file at {} (only directly under {PIPES_DIR})",
                    f.path
                )));
            };
            let path = out.0.join(name);
            let written = std::fs::write(&path, &f.content).and_then(|()| {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode & 0o7777))
            });
            if let Err(e) = written {
                let msg = format!("writing the heredoc file {}", path.display());
                out.remove();
                return Err(anyhow::Error::new(e).context(msg));
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_message_names_command_code_and_output() {
        let f = StepFailed {
            argv: vec!["/bin/sh".into(), "-c".into(), "exit 3".into()],
            exit: ExitStatus::Code(3),
            last_lines: vec!["boom".into()],
            hint: None,
        };
        let text = f.to_string();
        assert!(text.contains("\"/bin/sh -c exit 3\""), "{text}");
        assert!(text.contains("exit code: 3"), "{text}");
        assert!(text.ends_with("  boom"), "{text}");
        assert_eq!(f.code(), Some(3));
    }
}
