//! The command line: one file per verb, each with its own clap `Args` struct
//! and a `run` function. Global options (`--root`) live in [`global`].

mod build;
mod build_compat;
mod check;
mod du;
mod format;
mod global;
mod graph;
mod history;
mod images;
mod import;
mod inspect;
mod load;
mod not_yet;
mod parse;
mod prune;
mod pull;
mod push;
mod rmi;
mod save;
mod stdin_context;
mod store;
mod tag;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use global::GlobalOpts;

/// strata — build container images from Dockerfiles, rootless and daemonless.
#[derive(Debug, Parser)]
#[command(name = "strata", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and a context directory.
    Build(build::BuildArgs),
    /// Parse a Dockerfile and print its syntax tree.
    Parse(parse::ParseArgs),
    /// Print the build graph of a Dockerfile (JSON or Graphviz DOT).
    Graph(graph::GraphArgs),
    /// Run BuildKit's build checks (lint rules) over every stage, without building.
    Check(check::CheckArgs),
    /// List the images in the local store.
    Images(images::ImagesArgs),
    /// Show an image's config and manifest as JSON (like `docker image inspect`).
    Inspect(inspect::InspectArgs),
    /// Show an image's history, newest step first (like `docker history`).
    History(history::HistoryArgs),
    /// Give an image in the local store another name.
    Tag(tag::TagArgs),
    /// Remove image names from the local store.
    Rmi(rmi::RmiArgs),
    /// Pull an image from a registry into the local store.
    Pull(pull::PullArgs),
    /// Push an image from the local store to a registry.
    Push(push::PushArgs),
    /// Write images to a tarball that `docker load` and `podman load` accept.
    Save(save::SaveArgs),
    /// Load images from a docker-archive or OCI archive tarball.
    Load(load::LoadArgs),
    /// Make a one-layer image from a root filesystem tarball.
    Import(import::ImportArgs),
    /// Remove what no image and no cache entry uses.
    Prune(prune::PruneArgs),
    /// Show how much space the store uses.
    Du(du::DuArgs),
    /// Inspect and repair the store.
    Store(store::StoreArgs),
}

/// Parses the command line, runs the verb, prints any error and turns the
/// outcome into an exit code: 0 on success, 1 for anything the user can fix.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", crate::error_text(&err));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Build(a) => build::run(g, a),
        Command::Parse(a) => parse::run(g, a),
        Command::Graph(a) => graph::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Images(a) => images::run(g, a),
        Command::Inspect(a) => inspect::run(g, a),
        Command::History(a) => history::run(g, a),
        Command::Tag(a) => tag::run(g, a),
        Command::Rmi(a) => rmi::run(g, a),
        Command::Pull(a) => pull::run(g, a),
        Command::Push(a) => push::run(g, a),
        Command::Save(a) => save::run(g, a),
        Command::Load(a) => load::run(g, a),
        Command::Import(a) => import::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Du(a) => du::run(g, a),
        Command::Store(a) => store::run(g, a),
    }
}
