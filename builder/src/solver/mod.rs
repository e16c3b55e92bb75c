//! The solver: runs a build graph's vertices in parallel ([`schedule`]),
//! asks the cache before running anything with one protocol for every op
//! ([`solve`]: key, local lookup, key lock, lookup again, import, explain,
//! execute, record, progress), skips what only cache hits read ([`lazy`]),
//! and says why a step missed ([`explain`]). It knows no Dockerfile: ops,
//! caches and progress come in through the traits of [`solve`]; keys are
//! made with [`cache_key`].

pub mod cache_key;
pub mod explain;
pub mod lazy;
pub mod schedule;
pub mod solve;
