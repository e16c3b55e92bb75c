//! The Dockerfile frontend: text in, build graph out, with no I/O.
//!
//! It parses a Dockerfile (parser directives, instructions, flags, heredocs)
//! into an AST where every node carries its position, expands words the way
//! BuildKit's shell lexer does, and lowers the AST to a [`BuildGraph`]-style
//! description of stages, steps and image configs. Anything that needs the
//! outside world (a base image's config) comes in through a resolver trait the
//! caller implements, so the whole crate can be tested without a disk or a
//! network. [`lint`] holds BuildKit's build checks, which [`lower()`] runs
//! as warnings and [`check()`] runs over every stage; the facts they need
//! from disk (the context's `.dockerignore`) come in as parameters, as do
//! the target and build platforms ([`BuildOptions`]): the crate keeps no
//! table of host architectures. What a COPY/ADD reads is decided here too ([`CopySource`]: the context, a stage,
//! an image, a named context, URLs to download or a git repository, told
//! apart by [`source::classify`]), so the builder plans each as what it is.

pub mod ast;
pub mod diagnostic;
pub mod dump;
pub mod syntax;
pub mod words;

pub use diagnostic::{Diagnostic, Severity};
pub use syntax::parse;
pub mod config;
pub mod graph;
mod lower;
pub mod runmount;
pub mod source;

pub use config::{Healthcheck, ImageConfig};
pub use graph::{
    Base, BuildGraph, BuildOptions, CopySource, EmptyResolver, ExecOp, FileKind, FileOp, History,
    ImageResolver, InlineFile, NetworkMode, Op, Platform, ResolvedImage, Security, SourceDateEpoch,
    Stage, Step,
};
pub use lower::epoch::http_filename;
pub use lower::expose::parse_spec as parse_port_spec;
pub use lower::{check, lower};
pub mod dot;
pub mod lint;
