//! Lowering one stage: start from its base, then replay its instructions.
//! Metadata instructions update the image config and history here; RUN and
//! COPY/ADD produce steps (see [`super::exec`] and [`super::copy`]).

use std::collections::BTreeSet;

use crate::ast::{Args, Command, Instruction, Keyword};
use crate::config::{Empty, Healthcheck, ImageConfig};
use crate::diagnostic::Diagnostic;
use crate::graph::{Base, CopySource, FileKind, FileOp, History, Op, Platform, Stage, Step};

use super::stages::StageDecl;
use super::vars::{EnvIndex, Scope, Vars, env_key};
use super::{Ctx, duration, expose, flags_for, gofmt, paths};
use crate::lint::Rule;

/// The comment BuildKit puts on every history entry it writes.
pub(crate) const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The default PATH of a Linux container, used for `FROM scratch` and
/// whenever a base config has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state of a stage while its instructions are replayed.
pub(crate) struct StageBuilder<'c, 'a, 'd> {
    pub ctx: &'c mut Ctx<'a>,
    pub decls: &'c [StageDecl<'d>],
    pub id: usize,
    pub config: ImageConfig,
    pub author: Option<String>,
    pub history: Vec<History>,
    pub steps: Vec<Step>,
    /// ARGs declared in this stage so far: name and value (None: declared
    /// without a value).
    pub args: Vars,
    /// Where each key of `config.env` is; every change of the Env goes
    /// through [`StageBuilder::set_env`] so that it stays true.
    pub env_index: EnvIndex,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    pub deps: BTreeSet<usize>,
    pub platform: Platform,
    /// Position used for steps that come from ONBUILD triggers.
    pub trigger_at: Option<(usize, usize)>,
    /// Whether the base's config is known (not an image the resolver gave
    /// no digest for): UndefinedVar needs its Env.
    pub base_known: bool,
    /// Whether this stage has set a WORKDIR yet (WorkdirRelativePath).
    pub workdir_set: bool,
}

/// Lowers stage `id`. Its base stage, if any, is already in `done`.
pub(crate) fn lower_stage(
    ctx: &mut Ctx<'_>,
    id: usize,
    decls: &[StageDecl<'_>],
    done: &[Option<Stage>],
) -> Result<Stage, Diagnostic> {
    let decl = &decls[id];
    let from = decl.from;
    let mut platform = decl.platform.clone();
    let mut base_known = true;
    let (base, config, author) = match decl.base_stage {
        Some(b) => {
            base_known = !ctx.unknown_bases.contains(&b);
            let parent = done[b].as_ref().ok_or_else(|| {
                ctx.error(from, "internal error: base stage was not lowered first")
            })?;
            if !ctx.has_flag(from, "platform") {
                // A stage built on a stage has that stage's platform.
                platform = parent.platform.clone();
            }
            (
                Base::Stage { id: b },
                parent.config.clone(),
                parent.author.clone(),
            )
        }
        None if decl.base_name.eq_ignore_ascii_case("scratch") => {
            let config = ImageConfig {
                env: vec![format!("PATH={DEFAULT_PATH}")],
                ..Default::default()
            };
            (Base::Scratch, config, None)
        }
        None => {
            let resolved = ctx
                .resolver
                .resolve(&decl.base_name, &decl.platform)
                .map_err(|e| {
                    ctx.error(
                        from,
                        format!("failed to resolve base image {:?}: {e}", decl.base_name),
                    )
                    .with_hint("check the image name and that the registry is reachable")
                })?;
            base_known = !resolved.digest.is_empty();
            ctx.lint_base_platform(from, &decl.base_name, &decl.platform);
            let base = Base::Image {
                reference: decl.base_name.clone(),
                digest: resolved.digest,
                platform: decl.platform.clone(),
            };
            (base, resolved.config, None)
        }
    };
    if !base_known {
        ctx.unknown_bases.insert(id);
    }
    let env_index = EnvIndex::of(&config);
    let mut b = StageBuilder {
        ctx,
        decls,
        id,
        config,
        author,
        env_index,
        history: Vec::new(),
        steps: Vec::new(),
        args: Vars::default(),
        cmd_set: false,
        deps: decl.base_stage.into_iter().collect(),
        platform,
        trigger_at: None,
        base_known,
        workdir_set: false,
    };
    b.run_triggers(from)?;
    for ins in &decl.body {
        b.dispatch(ins)?;
    }
    Ok(Stage {
        id,
        name: decl.name.clone(),
        base,
        platform: b.platform,
        steps: b.steps,
        config: b.config,
        author: b.author,
        history: b.history,
        deps: b.deps.into_iter().collect(),
        line: from.keyword_span.line,
        column: from.keyword_span.column,
    })
}

impl StageBuilder<'_, '_, '_> {
    /// The variables words expand with: the config's Env, then the
    /// declared args with a value. A view, not a copy: building a copy per
    /// instruction made lowering quadratic.
    pub(crate) fn scope(&self) -> Scope<'_> {
        Scope {
            config: &self.config,
            env: &self.env_index,
            args: &self.args,
        }
    }

    /// Expands one word with the stage's variables, reporting variables
    /// that are not defined (UndefinedVar).
    pub(crate) fn expand(&mut self, ins: &Instruction, word: &str) -> Result<String, Diagnostic> {
        let e = self
            .ctx
            .lexer
            .process_word_with_matches(word, &self.scope())
            .map_err(|e| self.ctx.error(ins, e.to_string()))?;
        self.lint_undefined(ins, &e.unmatched);
        Ok(e.result)
    }

    /// Expands a word list (with field splitting) with the stage's
    /// variables, reporting undefined ones.
    pub(crate) fn expand_list(
        &mut self,
        ins: &Instruction,
        word: &str,
    ) -> Result<Vec<String>, Diagnostic> {
        // The same variables, seen once: only to know which are unset.
        if let Ok(e) = self
            .ctx
            .lexer
            .process_word_with_matches(word, &self.scope())
        {
            self.lint_undefined(ins, &e.unmatched);
        }
        self.ctx.expand_words(ins, word, &self.scope())
    }

    /// UndefinedVar: variables a word used that are neither set nor
    /// declared as ARGs of the stage. Skipped when the base image's
    /// config is unknown (`strata check` offline): its Env may set them.
    fn lint_undefined(&mut self, ins: &Instruction, unmatched: &BTreeSet<String>) {
        if !self.base_known || unmatched.is_empty() {
            return;
        }
        for var in unmatched {
            if self.args.get(var).is_some() {
                continue;
            }
            let mut msg = format!("Usage of undefined variable '${var}'");
            if self.ctx.take_suggestion() {
                let mut keys: Vec<&str> = self.config.env.iter().map(|e| env_key(e)).collect();
                keys.extend(self.args.iter().map(|(k, _)| k));
                if let Some(s) = super::suggest::closest(var, &keys) {
                    msg.push_str(&format!(" (did you mean ${s}?)"));
                }
            }
            self.lint(Rule::UndefinedVar, ins, msg);
        }
    }

    /// Sets `key=value` in the config's Env (BuildKit's replace-or-append).
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        self.env_index.set(&mut self.config, key, value);
    }

    /// The current working directory (absolute).
    /// The config keeps an absolute WORKDIR as written (`/app/`, even
    /// `/a/../b`), as BuildKit does; paths are resolved against its clean
    /// form.
    pub(crate) fn cwd(&self) -> String {
        paths::join("/", &self.config.working_dir)
    }

    /// The current shell for shell-form commands.
    pub(crate) fn shell(&self) -> Vec<String> {
        if self.config.shell.is_empty() {
            vec!["/bin/sh".to_string(), "-c".to_string()]
        } else {
            self.config.shell.clone()
        }
    }

    /// Records a metadata-only history entry.
    pub(crate) fn note(&mut self, created_by: String) {
        self.history.push(History {
            created_by,
            comment: HISTORY_COMMENT.to_string(),
            empty_layer: true,
        });
    }

    /// Adds a filesystem step and its history entry.
    pub(crate) fn push_step(&mut self, ins: &Instruction, created_by: String, op: Op) {
        self.history.push(History {
            created_by: created_by.clone(),
            comment: HISTORY_COMMENT.to_string(),
            empty_layer: false,
        });
        let (line, column) = self
            .trigger_at
            .unwrap_or((ins.keyword_span.line, ins.keyword_span.column));
        self.steps.push(Step {
            line,
            column,
            original: ins.original.clone(),
            created_by,
            op,
        });
    }

    /// A command's argv: exec form as is, shell form wrapped in SHELL.
    pub(crate) fn argv(&self, command: &Command) -> Vec<String> {
        match command {
            Command::Exec(words) => words.iter().map(|w| w.value.clone()).collect(),
            Command::Shell(text) => {
                let mut v = self.shell();
                v.push(text.value.clone());
                v
            }
        }
    }

    /// Replays one instruction.
    pub(crate) fn dispatch(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        self.ctx.check_flags(ins, flags_for(ins.kind))?;
        match ins.kind {
            Keyword::Arg => self.arg(ins),
            Keyword::Env => self.env_or_label(ins, true),
            Keyword::Label => self.env_or_label(ins, false),
            Keyword::Expose => self.expose(ins),
            Keyword::User => {
                let user = self.text_arg(ins, true)?;
                self.config.user = user.clone();
                self.note(format!("USER {user}"));
                Ok(())
            }
            Keyword::Workdir => self.workdir(ins),
            Keyword::Volume => self.volume(ins),
            Keyword::Stopsignal => {
                let sig = self.text_arg(ins, true)?;
                if sig.is_empty() || sig.chars().any(char::is_whitespace) {
                    return Err(self.ctx.error(ins, format!("invalid signal: {sig:?}")));
                }
                self.config.stop_signal = sig.clone();
                self.note(format!("STOPSIGNAL {sig}"));
                Ok(())
            }
            Keyword::Maintainer => {
                let who = self.text_arg(ins, false)?;
                self.author = Some(who.clone());
                self.note(format!("MAINTAINER {who}"));
                Ok(())
            }
            Keyword::Cmd => {
                let argv = self.command_arg(ins)?;
                self.config.cmd = argv.clone();
                self.cmd_set = true;
                self.note(format!("CMD {}", gofmt::quote_list(&argv)));
                Ok(())
            }
            Keyword::Entrypoint => {
                let argv = self.command_arg(ins)?;
                self.config.entrypoint = argv.clone();
                if !self.cmd_set {
                    // An ENTRYPOINT resets the CMD inherited from the base.
                    self.config.cmd.clear();
                }
                self.note(format!("ENTRYPOINT {}", gofmt::quote_list(&argv)));
                Ok(())
            }
            Keyword::Shell => self.shell_cmd(ins),
            Keyword::Healthcheck => self.healthcheck(ins),
            Keyword::Onbuild => self.onbuild(ins),
            Keyword::Run => self.run(ins),
            Keyword::Copy | Keyword::Add => self.copy(ins),
            Keyword::From => Err(self.ctx.error(ins, "FROM cannot appear here")),
            Keyword::Unknown => Err(unknown_instruction(self.ctx, ins)),
        }
    }

    /// The whole text argument (USER, WORKDIR, STOPSIGNAL, MAINTAINER).
    fn text_arg(&mut self, ins: &Instruction, expand: bool) -> Result<String, Diagnostic> {
        let raw = match &ins.args {
            Args::Text { text } => text.value.clone(),
            _ => ins.args_text.value.clone(),
        };
        if raw.trim().is_empty() {
            return Err(self.ctx.error(
                ins,
                format!("{} requires exactly one argument", ins.kind.as_upper()),
            ));
        }
        if !expand {
            return Ok(raw);
        }
        self.expand(ins, &raw)
    }

    /// Records a build-check finding at `ins`.
    pub(crate) fn lint(&mut self, rule: Rule, ins: &Instruction, msg: String) {
        if self.trigger_at.is_some() {
            // Not the user's Dockerfile: a base image's trigger.
            return;
        }
        self.ctx.lint.report(rule, ins.keyword_span, msg);
    }

    /// The command of CMD/ENTRYPOINT as an argv.
    fn command_arg(&mut self, ins: &Instruction) -> Result<Vec<String>, Diagnostic> {
        match &ins.args {
            Args::Command {
                command: command @ Command::Shell(_),
            } => {
                if self.config.shell.is_empty() {
                    let msg = format!(
                        "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                        ins.keyword
                    );
                    self.lint(Rule::JSONArgsRecommended, ins, msg);
                }
                Ok(self.argv(command))
            }
            Args::Command { command } => Ok(self.argv(command)),
            Args::Empty => Err(self.ctx.error(
                ins,
                format!("{} requires at least one argument", ins.kind.as_upper()),
            )),
            _ => Err(self.ctx.error(ins, "malformed command")),
        }
    }

    fn arg(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let Args::ArgDecls { decls } = &ins.args else {
            return Err(self.ctx.error(ins, "ARG requires at least one argument"));
        };
        let mut commit = Vec::new();
        for d in decls {
            let default = match &d.default {
                Some(def) => Some(self.expand(ins, def)?),
                None => None,
            };
            let value = if let Some(v) = self.ctx.opts.build_args.get(&d.name) {
                self.ctx.globals.used.insert(d.name.clone());
                Some(v.clone())
            } else if default.is_some() {
                default.clone()
            } else if let Some(global) = self.ctx.globals.get(&d.name) {
                global.map(str::to_string)
            } else {
                None
            };
            if !super::args::is_proxy(&d.name) {
                commit.push(match &default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.clone(),
                });
            }
            self.args.set(&d.name, value);
        }
        if !commit.is_empty() {
            self.note(format!("ARG {}", commit.join(" ")));
        }
        Ok(())
    }

    fn env_or_label(&mut self, ins: &Instruction, is_env: bool) -> Result<(), Diagnostic> {
        let word = if is_env { "ENV" } else { "LABEL" };
        let Args::KeyValues { pairs } = &ins.args else {
            return Err(self
                .ctx
                .error(ins, format!("{word} requires at least one argument")));
        };
        if pairs.is_empty() {
            return Err(self
                .ctx
                .error(ins, format!("{word} requires at least one argument")));
        }
        // All pairs expand with the environment from before the instruction.
        let mut expanded = Vec::new();
        for p in pairs {
            let k = self.expand(ins, &p.key.value)?;
            let v = self.expand(ins, &p.value.value)?;
            if k.is_empty() {
                return Err(self
                    .ctx
                    .error(ins, format!("{word} names must not be empty")));
            }
            if k.contains('\0') || v.contains('\0') {
                // A NUL cannot reach a process environment (RUN refuses
                // it there) and has no place in a config: refuse it here,
                // at its line, for ENV and LABEL alike.
                return Err(self
                    .ctx
                    .error(ins, format!("{word} {k:?} contains a NUL byte"))
                    .with_hint("remove the NUL byte from the Dockerfile"));
            }
            expanded.push((k, v));
        }
        let mut msg = word.to_string();
        for (k, v) in expanded {
            msg.push_str(&format!(" {k}={v}"));
            if is_env {
                self.set_env(&k, &v);
            } else {
                self.config.labels.insert(k, v);
            }
        }
        self.note(msg);
        Ok(())
    }

    fn expose(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let words: Vec<String> = match &ins.args {
            Args::Words { words } => words.iter().map(|w| w.value.clone()).collect(),
            _ => Vec::new(),
        };
        if words.is_empty() {
            return Err(self.ctx.error(ins, "EXPOSE requires at least one argument"));
        }
        let mut specs = Vec::new();
        for w in &words {
            specs.extend(self.expand_list(ins, w)?);
        }
        for spec in &specs {
            let (proto_upper, mapping) = expose::lint_spec(spec);
            if proto_upper {
                let msg =
                    format!("Defined protocol '{spec}' in EXPOSE instruction should be lowercase");
                self.lint(Rule::ExposeProtoCasing, ins, msg);
            }
            if mapping {
                let msg = format!(
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '{spec}'"
                );
                self.lint(Rule::ExposeInvalidFormat, ins, msg);
            }
            let ports = expose::parse_spec(spec).map_err(|e| {
                self.ctx
                    .error(ins, e)
                    .with_hint("write ports as PORT[/PROTO] or START-END[/PROTO], e.g. 80/tcp")
            })?;
            for p in ports {
                self.config.exposed_ports.insert(p, Empty {});
            }
        }
        self.note(format!("EXPOSE {}", specs.join(" ")));
        Ok(())
    }

    fn workdir(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let dir = self.text_arg(ins, true)?;
        if !self.workdir_set && !dir.starts_with('/') {
            let msg = format!(
                "Relative workdir {dir:?} can have unexpected results if the base image changes"
            );
            self.lint(Rule::WorkdirRelativePath, ins, msg);
        }
        if self.trigger_at.is_none() {
            self.workdir_set = true;
        }
        // BuildKit (system.NormalizeWorkdir): an absolute path is kept as
        // written, trailing slash included; a relative one is joined to
        // the current directory and cleaned (Go's path.Join).
        let written = if dir.starts_with('/') {
            dir
        } else {
            paths::join(&self.cwd(), &dir)
        };
        self.config.working_dir = written.clone();
        let wd = self.cwd();
        if wd == "/" {
            self.note(format!("WORKDIR {written}"));
            return Ok(());
        }
        let op = Op::File(FileOp {
            kind: FileKind::Mkdir,
            from: CopySource::None,
            sources: Vec::new(),
            inline: Vec::new(),
            dest: wd.clone(),
            chown: (!self.config.user.is_empty()).then(|| self.config.user.clone()),
            chmod: None,
            chmod_bits: Some(0o755),
            link: false,
            parents: true,
            exclude: Vec::new(),
            checksum: None,
            keep_git_dir: false,
            unpack: None,
        });
        self.push_step(ins, format!("WORKDIR {written}"), op);
        Ok(())
    }

    fn volume(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let items: Vec<String> = match &ins.args {
            Args::List { items, .. } => items.iter().map(|w| w.value.clone()).collect(),
            _ => Vec::new(),
        };
        if items.is_empty() {
            return Err(self.ctx.error(ins, "VOLUME requires at least one argument"));
        }
        let mut vols = Vec::new();
        for i in &items {
            let v = self.expand(ins, i)?;
            if v.trim().is_empty() {
                return Err(self
                    .ctx
                    .error(ins, "VOLUME specified can not be an empty string"));
            }
            self.config.volumes.insert(v.clone(), Empty {});
            vols.push(v);
        }
        self.note(format!("VOLUME {}", gofmt::plain_list(&vols)));
        Ok(())
    }

    fn shell_cmd(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let shell = match &ins.args {
            Args::Command {
                command: Command::Exec(words),
            } => words.iter().map(|w| w.value.clone()).collect::<Vec<_>>(),
            _ => {
                return Err(self
                    .ctx
                    .error(ins, "SHELL requires the arguments to be in JSON form")
                    .with_hint("write it as a JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"]"));
            }
        };
        if shell.is_empty() {
            return Err(self.ctx.error(ins, "SHELL requires at least one argument"));
        }
        self.config.shell = shell.clone();
        self.note(format!("SHELL {}", gofmt::plain_list(&shell)));
        Ok(())
    }

    fn healthcheck(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let Args::Healthcheck { kind, command } = &ins.args else {
            return Err(self.ctx.error(ins, "HEALTHCHECK requires an argument"));
        };
        let hc = if kind.value.eq_ignore_ascii_case("none") {
            if command.is_some() {
                return Err(self.ctx.error(ins, "HEALTHCHECK NONE takes no arguments"));
            }
            if !ins.flags.is_empty() {
                return Err(self.ctx.error(ins, "HEALTHCHECK NONE takes no flags"));
            }
            Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }
        } else if kind.value.eq_ignore_ascii_case("cmd") {
            let test = match command {
                Some(Command::Exec(words)) if !words.is_empty() => {
                    std::iter::once("CMD".to_string())
                        .chain(words.iter().map(|w| w.value.clone()))
                        .collect()
                }
                Some(Command::Shell(text)) if !text.value.trim().is_empty() => {
                    vec!["CMD-SHELL".to_string(), text.value.clone()]
                }
                _ => {
                    return Err(self
                        .ctx
                        .error(ins, "Missing command after HEALTHCHECK CMD")
                        .with_hint("write HEALTHCHECK CMD <command>"));
                }
            };
            let mut hc = Healthcheck {
                test,
                ..Default::default()
            };
            hc.interval = self.hc_duration(ins, "interval")?;
            hc.timeout = self.hc_duration(ins, "timeout")?;
            hc.start_period = self.hc_duration(ins, "start-period")?;
            hc.start_interval = self.hc_duration(ins, "start-interval")?;
            if let Some(r) = self.ctx.flag(ins, "retries") {
                let n: i64 = r.parse().map_err(|_| {
                    self.ctx
                        .error(ins, format!("invalid value for --retries: {r:?}"))
                })?;
                if n < 0 {
                    return Err(self.ctx.error(ins, "--retries cannot be negative"));
                }
                hc.retries = n;
            }
            hc
        } else {
            return Err(self
                .ctx
                .error(
                    ins,
                    format!("Unknown type {:?} in HEALTHCHECK (try CMD)", kind.value),
                )
                .with_hint("use HEALTHCHECK CMD <command> or HEALTHCHECK NONE"));
        };
        self.note(format!("HEALTHCHECK {}", hc.history_text()));
        self.config.healthcheck = Some(hc);
        Ok(())
    }

    /// A HEALTHCHECK duration flag: a Go duration, 0 or at least 1ms.
    fn hc_duration(&mut self, ins: &Instruction, name: &str) -> Result<i64, Diagnostic> {
        let Some(v) = self.ctx.flag(ins, name) else {
            return Ok(0);
        };
        if v.is_empty() {
            return Ok(0);
        }
        let ns = duration::parse(&v).map_err(|e| {
            self.ctx
                .error(ins, format!("invalid value for --{name}: {e}"))
                .with_hint("use a duration such as 30s, 1m30s or 500ms")
        })?;
        if ns < 0 {
            return Err(self
                .ctx
                .error(ins, format!("Interval \"{name}\" cannot be negative")));
        }
        if ns != 0 && ns < 1_000_000 {
            return Err(self
                .ctx
                .error(ins, format!("Interval {name:?} cannot be less than 1ms")));
        }
        Ok(ns)
    }
}

/// `unknown instruction: FNTRYPOINT (did you mean ENTRYPOINT?)`.
pub(crate) fn unknown_instruction(ctx: &Ctx<'_>, ins: &Instruction) -> Diagnostic {
    let word = ins.keyword.to_uppercase();
    let names: Vec<&str> = Keyword::ALL.iter().map(|(n, _)| *n).collect();
    match super::suggest::closest(&word, &names) {
        Some(s) => ctx
            .error(
                ins,
                format!("unknown instruction: {word} (did you mean {s}?)"),
            )
            .with_hint(format!("replace {word} with {s}")),
        None => ctx
            .error(ins, format!("unknown instruction: {word}"))
            .with_hint("see the Dockerfile reference for the list of instructions"),
    }
}
