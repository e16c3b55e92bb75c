//! The build context: which files a build may read (`.dockerignore`), which
//! files one COPY/ADD selects, and the content checksums that make those
//! files part of a cache key.

pub mod checksum;
pub mod chmod;
pub mod dockerignore;
pub mod filtered;
pub mod git;
pub mod git_env;
pub mod pattern;
pub mod remote;
pub mod resolve;
pub mod select;
mod walk;
