//! Writing several layers at once: entries or directories in, one
//! [`LayerDescriptor`] each out. It sits above both writers (`write.rs` for
//! entry lists, `walk.rs` for directories), so neither needs the other's
//! batch entry point.

use std::io::Write;
use std::path::PathBuf;

use rayon::prelude::*;

use super::compress::LayerDescriptor;
use super::entry::Entry;
use super::error::Result;
use super::walk::write_dir;
use super::write::{WriteOptions, write_layer};

/// What one layer of a batch is made from.
#[derive(Debug, Clone)]
pub enum LayerSource {
    Entries(Vec<Entry>),
    /// A directory tree, written as by [`write_dir`].
    Dir(PathBuf),
}

/// Writes several layers at once on the rayon pool (gzip members of all of
/// them share the pool). Results come back in input order.
pub fn write_layers<W: Write + Send>(
    jobs: Vec<(LayerSource, W)>,
    opts: &WriteOptions,
) -> Vec<Result<LayerDescriptor>> {
    jobs.into_par_iter()
        .map(|(src, out)| match src {
            LayerSource::Entries(e) => write_layer(e, opts, out),
            LayerSource::Dir(d) => write_dir(&d, opts, out),
        })
        .collect()
}
