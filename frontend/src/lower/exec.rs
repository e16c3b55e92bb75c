//! RUN: the command (shell form wrapped in SHELL, heredocs handled as
//! BuildKit does), its environment, mounts, network and security mode.

use crate::ast::{Args, Command, Instruction};
use crate::diagnostic::Diagnostic;
use crate::graph::{ExecOp, InlineFile, NetworkMode, Op, Security};
use crate::runmount::{self, RunMount};
use crate::words::Env;

use super::args::{is_proxy, proxy_env};
use super::stage::{DEFAULT_PATH, StageBuilder};
use super::stages::find_stage;

/// Where a `RUN <<EOF` script with a `#!` line is placed.
const PIPES_DIR: &str = "/dev/pipes";

impl StageBuilder<'_, '_, '_> {
    pub(crate) fn run(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let Args::Command { command } = &ins.args else {
            return Err(self.ctx.error(ins, "RUN requires at least one argument"));
        };
        let mut inline_files = Vec::new();
        let argv = match command {
            Command::Exec(words) if ins.heredocs.is_empty() => {
                if words.is_empty() {
                    return Err(self.ctx.error(ins, "RUN requires at least one argument"));
                }
                words.iter().map(|w| w.value.clone()).collect()
            }
            Command::Exec(_) => {
                return Err(self.ctx.error(
                    ins,
                    "heredocs are only supported with the shell form of RUN",
                ));
            }
            Command::Shell(text) => {
                let script = self.heredoc_script(&text.value, ins, &mut inline_files);
                match script {
                    Script::File(path) => vec![path],
                    Script::Shell(s) => {
                        let mut v = self.shell();
                        v.push(s);
                        v
                    }
                }
            }
        };
        let devices = self.ctx.flags(ins, "device");
        if !devices.is_empty() {
            // Validated, then refused: strata has no CDI device support, and
            // silently dropping a device would build something else.
            for value in &devices {
                runmount::parse_device(value).map_err(|e| self.ctx.error(ins, e))?;
            }
            return Err(self
                .ctx
                .error(ins, "RUN --device is not supported by strata")
                .with_hint("remove --device, or build this Dockerfile with BuildKit"));
        }
        let env_pairs = self.exec_env();
        let cwd = self.cwd();
        let mut mounts = Vec::new();
        for value in self.ctx.flags(ins, "mount") {
            mounts.push(self.mount(ins, &value, &env_pairs, &cwd)?);
        }
        let network = match self.ctx.flag(ins, "network") {
            None => None,
            Some(n) => Some(match n.as_str() {
                "default" => NetworkMode::Default,
                "none" => NetworkMode::None,
                "host" => NetworkMode::Host,
                other => {
                    return Err(self
                        .ctx
                        .error(ins, format!("unsupported network mode {other:?}"))
                        .with_hint("use --network=default, none or host"));
                }
            }),
        };
        let security = match self.ctx.flag(ins, "security") {
            None => None,
            Some(s) => Some(match s.as_str() {
                "sandbox" => Security::Sandbox,
                "insecure" => Security::Insecure,
                other => {
                    return Err(self
                        .ctx
                        .error(ins, format!("unsupported security mode {other:?}"))
                        .with_hint("use --security=sandbox or insecure"));
                }
            }),
        };
        let created_by = format!("RUN {} # buildkit", self.run_command_string(&argv));
        let op = ExecOp {
            argv,
            env: env_pairs,
            proxy_env: proxy_env(&self.ctx.opts.build_args),
            cwd,
            user: (!self.config.user.is_empty()).then(|| self.config.user.clone()),
            mounts,
            network,
            security,
            inline_files,
        };
        self.push_step(ins, created_by, Op::Exec(op));
        Ok(())
    }

    /// The process environment: config Env, then declared args with a value
    /// that ENV does not set; a default PATH when there is none.
    fn exec_env(&self) -> Vec<(String, String)> {
        let mut env = self.config.env_pairs();
        for (k, v) in self.args.iter() {
            if let Some(v) = v
                && self.env_index.get(&self.config, k).is_none()
            {
                env.push((k.to_string(), v.to_string()));
            }
        }
        if self.env_index.get(&self.config, "PATH").is_none() {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        env
    }

    /// BuildKit's `runCommandString`: `|N K=V ... argv...`, listing the
    /// stage's declared args (proxy args excluded) so that history shows
    /// which build args a RUN saw.
    fn run_command_string(&self, argv: &[String]) -> String {
        let mut parts: Vec<String> = Vec::new();
        // Names are unique in `self.args`, so each appears once.
        for (k, v) in self.args.iter() {
            if is_proxy(k) {
                continue;
            }
            let value = self
                .env_index
                .get(&self.config, k)
                .or(v)
                .unwrap_or_default();
            parts.push(format!("{k}={value}"));
        }
        if !parts.is_empty() {
            parts.insert(0, format!("|{}", parts.len()));
        }
        parts.extend(argv.iter().cloned());
        parts.join(" ")
    }

    /// Turns a shell-form RUN with heredocs into what runs.
    fn heredoc_script(&self, text: &str, ins: &Instruction, files: &mut Vec<InlineFile>) -> Script {
        if ins.heredocs.is_empty() {
            return Script::Shell(text.to_string());
        }
        let only_heredoc = ins.heredocs.len() == 1 && is_heredoc_word(text.trim());
        if only_heredoc {
            let h = &ins.heredocs[0];
            let body = h.chomped();
            if body.starts_with("#!") {
                let path = format!("{PIPES_DIR}/{}", h.name);
                files.push(InlineFile {
                    path: path.clone(),
                    content: body,
                    mode: 0o755,
                });
                return Script::File(path);
            }
            return Script::Shell(body);
        }
        // The whole line with the heredocs appended: the shell reads them.
        let mut s = text.to_string();
        for h in &ins.heredocs {
            s.push('\n');
            s.push_str(&h.content);
            s.push_str(&h.name);
        }
        Script::Shell(s)
    }

    /// Parses one `--mount`, resolving `from=` to a stage when it names one.
    fn mount(
        &mut self,
        ins: &Instruction,
        value: &str,
        env: &dyn Env,
        cwd: &str,
    ) -> Result<RunMount, Diagnostic> {
        // The process environment holds every variable the stage's scope
        // has (plus the default PATH), and wins over it.
        let lexer = self.ctx.lexer;
        let mut expand = |w: &str| -> Result<String, String> {
            lexer.process_word(w, env).map_err(|e| e.to_string())
        };
        let mut m = runmount::parse_mount(value, &mut expand, cwd).map_err(|e| {
            self.ctx.error(ins, e).with_hint(
                "see `RUN --mount` in the Dockerfile reference: type=bind|cache|tmpfs|secret|ssh",
            )
        })?;
        if let Some(from) = &m.from
            && let Some(id) = find_stage(&self.ctx.stage_names, self.decls.len(), from)
        {
            if id >= self.id {
                return Err(self.ctx.error(
                    ins,
                    format!(
                        "cannot mount from stage {from:?}, it needs to be defined before current stage"
                    ),
                ));
            }
            m.from_stage = Some(id);
            self.deps.insert(id);
        }
        Ok(m)
    }
}

/// What a RUN executes.
enum Script {
    /// A shell command (wrapped in SHELL).
    Shell(String),
    /// A script file executed directly (its `#!` line picks the interpreter).
    File(String),
}

/// Whether `w` is a single heredoc word such as `<<EOF`, `<<-EOF`,
/// `<<"EOF"`.
fn is_heredoc_word(w: &str) -> bool {
    let Some(rest) = w.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    !rest.is_empty() && !rest.chars().any(char::is_whitespace)
}
