//! `strata check` (and `strata build --check`): BuildKit's build checks
//! over every stage of a Dockerfile, without building it.
//!
//! Findings print as warnings (`file:line:col: Rule: message`, then the
//! rule's description and link); the exit status is 0 unless the
//! Dockerfile is invalid or says `# check=error=true` and something was
//! found, as with `docker build --check`. The context's `.dockerignore`
//! (or `<Dockerfile>.dockerignore`) is read for CopyIgnoredFile. Base
//! images are not contacted, so the checks that need a base image's
//! config (UndefinedVar in a stage built on an image) or its platform
//! (InvalidBaseImagePlatform) are not made for those stages.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::GlobalOpts;
use super::graph::DockerfileArgs;
use crate::context::dockerignore;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
}

pub fn run(_g: &GlobalOpts, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let located = args.dockerfile.locate()?;
    let (name, text) = args.dockerfile.read(&located)?;
    let opts = args.dockerfile.options(&name)?;
    check(
        &located.context,
        Some(&located.dockerfile),
        &name,
        &text,
        &opts,
    )
}

/// Runs the checks over `text` (the Dockerfile named `name`, at
/// `dockerfile` when it is a file) with `context`'s ignore file, prints the
/// findings and says how to exit.
pub fn check(
    context: &Path,
    dockerfile: Option<&Path>,
    name: &str,
    text: &str,
    opts: &frontend::BuildOptions,
) -> anyhow::Result<ExitCode> {
    let df = frontend::parse(name, text)?;
    let (matcher, _) = dockerignore::load_for_build(context, dockerfile)?;
    // BuildKit does not check when there is no ignore file, or when it
    // has `!` exceptions (an excluded directory may have a file let back).
    let excludes = |p: &str| matcher.excludes(p);
    let facts = frontend::lint::Facts {
        ignored: (!matcher.is_empty() && !matcher.has_exceptions())
            .then_some(&excludes as &dyn Fn(&str) -> bool),
    };
    let report = frontend::check(&df, opts, &frontend::EmptyResolver, &facts)?;
    for f in &report.findings {
        eprintln!("{}", f.to_diagnostic());
    }
    if report.findings.is_empty() {
        eprintln!("Check complete, no warnings found.");
        return Ok(ExitCode::SUCCESS);
    }
    // buildx's summary line.
    match report.findings.len() {
        1 => eprintln!("Check complete, 1 warning has been found!"),
        n => eprintln!("Check complete, {n} warnings have been found!"),
    }
    if report.config.error {
        let mut names: Vec<&str> = Vec::new();
        for f in &report.findings {
            if !names.contains(&f.rule.name()) {
                names.push(f.rule.name());
            }
        }
        bail!(
            "lint violation found for rules: {} (the Dockerfile sets # check=error=true)",
            names.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
