//! The `strata` binary's library half: the command line, the solver that runs
//! a build graph in parallel against the cache, progress output and the
//! wiring of outputs. Parsing lives in `frontend`, storage in `cache`,
//! sandboxes in `runtime`; this crate only joins them.
//!
//! Two step executors exist side by side, written at the same time by two
//! people: `strata build` runs steps through [`pipeline`] and [`ops`] (base
//! layers unpacked per diff_id, `COPY --from` through an unpacked source
//! tree), while [`engine`] is a second, separately tested executor (layer
//! stacks keyed by chain id, `COPY --from` read straight from the source
//! stack's layers) that nothing in the binary calls yet. They are to be merged
//! into one; until then, a change to how a step executes must be made in
//! `ops`, which is what users run.

pub mod cli;
pub mod context;
pub mod engine;
pub mod ops;
pub mod options;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod solver;

/// The one refusal for a path that is not built yet, worded like the CLI's
/// (`cli::not_yet`), so a library module can refuse without reaching into
/// the command line.
pub(crate) fn not_supported(what: &str) -> anyhow::Error {
    anyhow::anyhow!("not supported yet: {what}")
}
