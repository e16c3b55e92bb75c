//! The solver: runs a build graph's vertices in parallel, asks the cache
//! before running anything, and says why a step missed.

pub mod cache_key;
pub mod explain;
pub mod lazy;
pub mod schedule;
pub mod solve;
