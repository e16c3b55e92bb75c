//! `strata parse`: print a Dockerfile's syntax tree.
//!
//! `--dump` (the default) prints BuildKit's dump format, byte for byte what
//! BuildKit's parser tests expect, so the two parsers can be compared
//! directly. `--json` prints the full tree with positions and heredoc
//! bodies, for tools. This is a syntax-level view: a line such as
//! `HEALTHCHECK CONNECT TCP 7000` still dumps; `strata check` judges meaning.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Print BuildKit's AST dump format (the default).
    #[arg(long, conflicts_with = "json")]
    pub dump: bool,
    /// Print the syntax tree as JSON, with positions and heredoc bodies.
    #[arg(long)]
    pub json: bool,
    /// The Dockerfile to parse; `-` reads standard input.
    #[arg(default_value = "Dockerfile")]
    pub file: PathBuf,
}

pub fn run(_g: &GlobalOpts, args: ParseArgs) -> anyhow::Result<ExitCode> {
    let (name, bytes) = read_input(&args.file)?;
    // Dockerfiles are UTF-8; stray invalid bytes become U+FFFD rather than
    // making the whole file unreadable.
    let text = String::from_utf8_lossy(&bytes);
    let ast = frontend::parse(&name, &text)?;
    for warning in &ast.warnings {
        eprintln!("{warning}");
    }
    let out = if args.json {
        let mut s = serde_json::to_string_pretty(&ast).context("serialising the syntax tree")?;
        s.push('\n');
        s
    } else {
        frontend::dump::dump(&ast)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}

/// The display name and the bytes of the input file (`-` is stdin).
fn read_input(path: &PathBuf) -> anyhow::Result<(String, Vec<u8>)> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the Dockerfile from standard input")?;
        return Ok(("-".to_string(), buf));
    }
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read {}: pass the Dockerfile's path, or - for standard input",
            path.display()
        )
    })?;
    Ok((path.display().to_string(), bytes))
}
