//! The `strata` binary's library half: the command line, the solver that runs
//! a build graph in parallel against the cache, progress output and the
//! wiring of outputs. Parsing lives in `frontend`, storage in `cache`,
//! sandboxes in `runtime`; this crate only joins them.

pub mod cli;
