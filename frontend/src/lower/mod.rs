//! Lowering: from a parsed Dockerfile to the [`BuildGraph`] the builder
//! executes.
//!
//! The work is split by concept: [`stages`] finds the stages, their names,
//! bases and references and picks what the target needs; [`args`] holds
//! ARG scoping; [`stage`] replays one stage's instructions over its image
//! config (metadata instructions), with [`exec`] (RUN) and [`copy`]
//! (COPY/ADD) producing the steps; [`onbuild`] runs a base image's
//! triggers. Helpers: [`paths`], [`duration`], [`expose`], [`gofmt`],
//! [`suggest`].

pub(crate) mod args;
mod copy;
pub(crate) mod duration;
pub mod epoch;
mod exec;
pub mod expose;
pub(crate) mod gofmt;
mod lint_from;
mod onbuild;
pub(crate) mod paths;
mod stage;
mod stages;
pub(crate) mod suggest;
mod vars;

use std::collections::{BTreeSet, HashMap};

use crate::ast::{Args, Dockerfile, Instruction, Keyword};
use crate::diagnostic::Diagnostic;
use crate::graph::{BuildGraph, BuildOptions, ImageResolver, SourceDateEpoch, Stage};
use crate::lint::{CheckConfig, CheckReport, Facts, Finding, Linter};
use crate::words::{Env, Lexer};

use args::GlobalArgs;
use stages::StageDecl;

/// Lowers a parsed Dockerfile to the graph of the stages `opts.target`
/// needs. Calls `resolver` for the base image of every needed stage that
/// starts `FROM <image>`.
///
/// Errors name `file:line:column` and say what to do; warnings (an unused
/// `--build-arg`, parser warnings) are returned in the graph.
///
/// BuildKit's build checks run as well: their findings are returned as
/// warnings (`Rule: message`), and with `# check=error=true` any finding
/// fails the lowering, as it fails `docker build`.
pub fn lower(
    df: &Dockerfile,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildGraph, Diagnostic> {
    let (mut graph, mut linter) = lower_with(df, opts, resolver, &Facts::default(), false)?;
    linter.findings.sort_by_key(|f| (f.line, f.column, f.rule));
    let file = linter.file.clone();
    if let Some(msg) = linter.violation() {
        // The findings go with the error: a failed lowering returns no
        // graph, so they could not be printed as warnings.
        let mut hint = String::new();
        for f in &linter.findings {
            hint.push_str(&format!("{f}\n  "));
        }
        hint.push_str(
            "fix these, or skip rules with `# check=skip=<rules>`, or drop `# check=error=true`",
        );
        return Err(Diagnostic::error(file, 0, 0, msg).with_hint(hint));
    }
    graph
        .warnings
        .extend(linter.findings.iter().map(Finding::to_diagnostic));
    Ok(graph)
}

/// Runs BuildKit's build checks over every stage of `df` (not only the
/// target's), without building: what `docker build --check` does. `facts`
/// carries what needs I/O (the context's `.dockerignore`). Errors are the
/// ones lowering would report; findings come back in the report, which
/// says (`config.error`) whether they must fail the caller.
pub fn check(
    df: &Dockerfile,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
    facts: &Facts<'_>,
) -> Result<CheckReport, Diagnostic> {
    let (_, mut linter) = lower_with(df, opts, resolver, facts, true)?;
    linter.findings.sort_by_key(|f| (f.line, f.column, f.rule));
    Ok(CheckReport {
        config: linter.config,
        findings: linter.findings,
    })
}

/// Lowering with the lint rules switched on; `all_stages` lowers every
/// stage instead of only those the target needs.
fn lower_with(
    df: &Dockerfile,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
    facts: &Facts<'_>,
    all_stages: bool,
) -> Result<(BuildGraph, Linter), Diagnostic> {
    let file = if opts.file_name.is_empty() {
        df.file_name.clone()
    } else {
        opts.file_name.clone()
    };
    let mut linter = Linter::new(&file, CheckConfig::of(df, &file)?);
    crate::lint::syntax::check(df, &mut linter);
    let warnings = df
        .warnings
        .iter()
        .filter(|w| !w.message.starts_with("Empty continuation line"))
        .cloned()
        .collect();
    let mut ctx = Ctx {
        file,
        lexer: Lexer::new(df.escape),
        opts,
        resolver,
        globals: GlobalArgs::new(opts),
        warnings,
        stage_names: HashMap::new(),
        lint: linter,
        facts,
        default_globals: GlobalArgs::new(&BuildOptions::default()),
        unknown_bases: BTreeSet::new(),
        suggestions_left: MAX_SUGGESTIONS,
    };
    let mut decls: Vec<StageDecl<'_>> = Vec::new();
    for ins in &df.instructions {
        if ins.kind == Keyword::From {
            let decl = ctx.read_from(ins)?;
            if let Some(name) = &decl.name {
                ctx.stage_names.insert(name.clone(), decls.len());
            }
            decls.push(decl);
            continue;
        }
        match decls.last_mut() {
            Some(d) => d.body.push(ins),
            None if ins.kind == Keyword::Arg => ctx.global_arg(ins)?,
            None => {
                return Err(ctx
                    .error(ins, "no build stage in current context")
                    .with_hint("only ARG may come before the first FROM"));
            }
        }
    }
    if decls.is_empty() {
        let span = df.span;
        return Err(Diagnostic::error(
            &ctx.file,
            span.line,
            span.column,
            "dockerfile contains no stages to build",
        )
        .with_hint("add a FROM line, e.g. `FROM alpine` or `FROM scratch`"));
    }
    ctx.scan_refs(&mut decls)?;
    ctx.check_order(&decls)?;
    let target = ctx.select_target(&decls)?;
    let mut done: Vec<Option<Stage>> = vec![None; decls.len()];
    let epoch = match ctx.epoch_value() {
        Some(v) => Some(ctx.epoch_request(&v, &decls)?),
        None => None,
    };
    ctx.lint_default_base_names(&decls);
    let mut needed = if all_stages {
        (0..decls.len()).collect()
    } else {
        stages::needed(&decls, target)
    };
    if let Some(epoch::Request::Stage(id)) = &epoch {
        needed.extend(stages::needed(&decls, *id));
    }
    // Ascending order lowers every base stage before its children (bases
    // are always earlier). ONBUILD triggers of a base image may add
    // dependencies on earlier stages; those are lowered in another pass.
    loop {
        let mut added = BTreeSet::new();
        for id in 0..decls.len() {
            if !needed.contains(&id) || done[id].is_some() {
                continue;
            }
            let stage = stage::lower_stage(&mut ctx, id, &decls, &done)?;
            added.extend(stage.deps.iter().copied().filter(|d| !needed.contains(d)));
            done[id] = Some(stage);
        }
        if added.is_empty() {
            break;
        }
        for d in added {
            needed.extend(stages::needed(&decls, d));
        }
    }
    let source_date_epoch = match epoch {
        None => None,
        Some(epoch::Request::Seconds(seconds)) => Some(SourceDateEpoch::Seconds { seconds }),
        Some(epoch::Request::Context) => Some(SourceDateEpoch::Context),
        Some(epoch::Request::Stage(id)) => match &done[id] {
            Some(stage) => Some(epoch::check_source_stage(&ctx, &decls[id], stage)?),
            None => None,
        },
    };
    ctx.warn_unused_build_args();
    let stages: Vec<Stage> = done.into_iter().flatten().collect();
    let target = stages.iter().position(|s| s.id == target).unwrap_or(0);
    let graph = BuildGraph {
        stages,
        target,
        warnings: ctx.warnings,
        source_date_epoch,
    };
    Ok((graph, ctx.lint))
}

/// Findings that get a "did you mean" suggestion, per Dockerfile.
const MAX_SUGGESTIONS: usize = 100;

/// Lowering state shared by all stages.
pub(crate) struct Ctx<'a> {
    pub file: String,
    pub lexer: Lexer,
    pub opts: &'a BuildOptions,
    pub resolver: &'a dyn ImageResolver,
    pub globals: GlobalArgs,
    pub warnings: Vec<Diagnostic>,
    /// Stage `AS` names (lower case) to their index, filled while the FROM
    /// lines are read: looking names up must not scan every stage.
    pub stage_names: HashMap<String, usize>,
    /// BuildKit's build checks: where findings are collected.
    pub lint: Linter,
    /// What the checks need from outside (I/O done by the caller).
    pub facts: &'a Facts<'a>,
    /// The global ARGs as their defaults alone make them (no build args),
    /// for InvalidDefaultArgInFrom.
    pub default_globals: GlobalArgs,
    /// Stages whose base config is unknown (an image the resolver gave no
    /// digest for, or a stage built on one).
    pub unknown_bases: BTreeSet<usize>,
    /// How many more findings may get a "did you mean" suggestion. Each
    /// costs a scan of every variable in scope, so an unbounded number
    /// would make a file full of undefined variables quadratic.
    pub suggestions_left: usize,
}

/// Flags each instruction accepts.
pub(crate) fn flags_for(kind: Keyword) -> &'static [&'static str] {
    match kind {
        Keyword::From => &["platform"],
        Keyword::Run => &["mount", "network", "security", "device"],
        Keyword::Copy => &["from", "chown", "chmod", "link", "parents", "exclude"],
        Keyword::Add => &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "keep-git-dir",
            "exclude",
            "unpack",
            "parents",
        ],
        Keyword::Healthcheck => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

impl Ctx<'_> {
    /// Whether one more finding may compute a suggestion.
    pub(crate) fn take_suggestion(&mut self) -> bool {
        let ok = self.suggestions_left > 0;
        self.suggestions_left = self.suggestions_left.saturating_sub(1);
        ok
    }

    /// An error located at `ins`.
    pub(crate) fn error(&self, ins: &Instruction, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.file, ins.keyword_span, msg)
    }

    /// The last value of flag `name` (a bare `--flag` gives `""`).
    pub(crate) fn flag(&self, ins: &Instruction, name: &str) -> Option<String> {
        ins.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .map(|f| f.value.clone().unwrap_or_default())
    }

    /// Whether flag `name` is present.
    pub(crate) fn has_flag(&self, ins: &Instruction, name: &str) -> bool {
        ins.flags.iter().any(|f| f.name == name)
    }

    /// Every value of a repeatable flag, in order.
    pub(crate) fn flags(&self, ins: &Instruction, name: &str) -> Vec<String> {
        ins.flags
            .iter()
            .filter(|f| f.name == name)
            .map(|f| f.value.clone().unwrap_or_default())
            .collect()
    }

    /// Rejects flags the instruction does not take (the parser's
    /// instruction layer does too; this keeps lowering safe on any AST).
    pub(crate) fn check_flags(
        &self,
        ins: &Instruction,
        allowed: &[&str],
    ) -> Result<(), Diagnostic> {
        for f in &ins.flags {
            if !allowed.contains(&f.name.as_str()) {
                let mut d =
                    Diagnostic::at(&self.file, f.span, format!("unknown flag: --{}", f.name));
                if let Some(s) = suggest::closest(&f.name, allowed) {
                    d = d.with_hint(format!("did you mean {s}?"));
                } else if allowed.is_empty() {
                    d = d.with_hint(format!("{} takes no flags", ins.kind.as_upper()));
                }
                return Err(d);
            }
        }
        Ok(())
    }

    /// Expands one word, mapping errors to a diagnostic at `ins`.
    pub(crate) fn expand_word(
        &self,
        ins: &Instruction,
        word: &str,
        env: &dyn Env,
    ) -> Result<String, Diagnostic> {
        self.lexer
            .process_word(word, env)
            .map_err(|e| self.error(ins, e.to_string()))
    }

    /// Expands a word list with field splitting.
    pub(crate) fn expand_words(
        &self,
        ins: &Instruction,
        word: &str,
        env: &dyn Env,
    ) -> Result<Vec<String>, Diagnostic> {
        self.lexer
            .process_words(word, env)
            .map_err(|e| self.error(ins, e.to_string()))
    }

    /// A global ARG (before the first FROM).
    fn global_arg(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        self.check_flags(ins, &[])?;
        let Args::ArgDecls { decls } = &ins.args else {
            return Err(self.error(ins, "ARG requires at least one argument"));
        };
        for d in decls {
            let value = match self.opts.build_args.get(&d.name) {
                Some(v) => {
                    self.globals.used.insert(d.name.clone());
                    Some(v.clone())
                }
                None => match &d.default {
                    Some(def) => Some(self.expand_word(ins, def, self.globals.env())?),
                    None => None,
                },
            };
            self.globals.set(&d.name, value);
            let default = match &d.default {
                Some(def) => self
                    .lexer
                    .process_word(def, self.default_globals.env())
                    .ok(),
                None => None,
            };
            self.default_globals.set(&d.name, default);
        }
        Ok(())
    }

    /// Warns about `--build-arg`s no ARG consumed.
    fn warn_unused_build_args(&mut self) {
        let unused: Vec<&str> = self
            .opts
            .build_args
            .keys()
            .filter(|k| {
                !self.globals.used.contains(*k)
                    && !args::is_proxy(k)
                    && !args::is_platform_arg(k)
                    && k.as_str() != "SOURCE_DATE_EPOCH"
                    && !k.starts_with("BUILDKIT_")
            })
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            self.warnings.push(
                Diagnostic::error(
                    &self.file,
                    0,
                    0,
                    format!(
                        "one or more build-args [{}] were not consumed",
                        unused.join(" ")
                    ),
                )
                .with_hint("declare them with ARG in the stage that uses them, or drop them")
                .warning(),
            );
        }
    }
}
