//! `strata graph`: print the build graph of a Dockerfile.
//!
//! `--format json` (the default) prints [`frontend::BuildGraph`] for tools;
//! `--format dot` prints Graphviz DOT for people (`strata graph --format dot
//! | dot -Tsvg > graph.svg`). Base images are not contacted: the graph is
//! computed with [`frontend::EmptyResolver`], which gives every base image an
//! empty config and no digest, so inherited config (ENV, ONBUILD triggers of
//! a base image) is not shown. Everything the Dockerfile itself says is.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::GlobalOpts;

/// The Dockerfile-selecting options `graph` and `check` share.
#[derive(Debug, Args)]
pub struct DockerfileArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// A build argument, KEY=VALUE (KEY alone takes the value from the
    /// environment, as `docker build` does). Repeatable.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// The target platform, os/arch[/variant] (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// The build context directory (the Dockerfile is CONTEXT/Dockerfile
    /// unless -f says otherwise), or the Dockerfile itself (its directory is
    /// then the context).
    #[arg(default_value = ".", value_name = "CONTEXT|DOCKERFILE")]
    pub context: PathBuf,
}

/// Where the Dockerfile and the context are, from [`DockerfileArgs`].
pub struct Located {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
}

impl DockerfileArgs {
    /// Accepts a context directory (with `-f` or `CONTEXT/Dockerfile`) or
    /// a Dockerfile path, as `strata parse` takes a file.
    pub fn locate(&self) -> anyhow::Result<Located> {
        if self.context.is_file() {
            if self.file.is_some() {
                bail!(
                    "{} is a file and -f names the Dockerfile too: pass either the Dockerfile, or the context directory with -f FILE",
                    self.context.display()
                );
            }
            let context = match self.context.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            return Ok(Located {
                dockerfile: self.context.clone(),
                context,
            });
        }
        Ok(Located {
            dockerfile: self
                .file
                .clone()
                .unwrap_or_else(|| self.context.join("Dockerfile")),
            context: self.context.clone(),
        })
    }

    /// Reads the Dockerfile: its name for messages and its text.
    pub fn read(&self, located: &Located) -> anyhow::Result<(String, String)> {
        let path = &located.dockerfile;
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {}: pass the Dockerfile, or its directory, or -f FILE",
                path.display()
            )
        })?;
        Ok((
            path.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }

    /// The lowering options the flags give.
    pub fn options(&self, file_name: &str) -> anyhow::Result<frontend::BuildOptions> {
        let mut opts = frontend::BuildOptions {
            build_args: build_args(&self.build_args)?,
            target: self.target.clone(),
            file_name: file_name.to_string(),
            ..crate::platform::host_build_options()
        };
        if let Some(p) = &self.platform {
            opts.platform = p.parse().map_err(anyhow::Error::msg)?;
        }
        Ok(opts)
    }
}

/// Output formats of `strata graph`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Dot,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
    /// json for tools, dot for Graphviz.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

pub fn run(_g: &GlobalOpts, args: GraphArgs) -> anyhow::Result<ExitCode> {
    let graph = lower(&args.dockerfile)?;
    for w in &graph.warnings {
        eprintln!("{w}");
    }
    let out = match args.format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&graph).context("serialising the graph")?;
            s.push('\n');
            s
        }
        Format::Dot => frontend::dot::render(&graph),
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}

/// Reads, parses and lowers the Dockerfile the options name.
pub fn lower(args: &DockerfileArgs) -> anyhow::Result<frontend::BuildGraph> {
    let located = args.locate()?;
    let (name, text) = args.read(&located)?;
    let df = frontend::parse(&name, &text)?;
    let opts = args.options(&name)?;
    Ok(frontend::lower(&df, &opts, &frontend::EmptyResolver)?)
}

/// Parses `--build-arg` values.
fn build_args(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => bail!("invalid --build-arg {a:?}: expected KEY=VALUE"),
            None => {
                // `--build-arg KEY` takes KEY from the environment; unset
                // means the argument is not given at all.
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}
