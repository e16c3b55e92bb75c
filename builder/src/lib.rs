//! The `strata` binary's library half: the command line, the solver that runs
//! a build graph in parallel against the cache, progress output and the
//! wiring of outputs. Parsing lives in `frontend`, storage in `cache`,
//! sandboxes in `runtime`; this crate only joins them.
//!
//! Steps execute in one place: [`pipeline`] lowers the Dockerfile, plans the
//! vertices and runs them on the [`solver`] against the cache, and [`ops`]
//! runs each one — base layers fetched lazily and unpacked once per diff_id
//! into `<root>/snapshots/layer-<hex>`, RUN in the runtime's sandbox over a
//! snapshot of those layer directories, COPY/ADD/WORKDIR written straight
//! into a new layer directory, and `COPY --from` read in place from the
//! source's layer directories inside the build's user namespace. A layer
//! built here *is* its directory plus a streamed diff_id (`ops::commit`):
//! nothing is compressed while building; [`output`] makes the blobs an
//! output needs, once each.

pub mod cli;
pub mod context;
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

/// A registry client from the environment (`STRATA_INSECURE_REGISTRIES`,
/// credentials, mirror, timeouts) plus `--insecure-registry` hosts, which
/// are passed down as an option rather than written into the environment.
pub fn registry_client(
    insecure: &[String],
) -> anyhow::Result<cache::transport::registry::RegistryClient> {
    let mut opts = cache::transport::registry::ClientOptions::from_env()?;
    for h in insecure {
        opts.endpoints.add_insecure(h);
    }
    Ok(cache::transport::registry::RegistryClient::new(opts))
}

/// The registry client of one command, made on first use (a build that
/// touches no registry never reads credentials) and shared by everything
/// the command does, so tokens are fetched once.
pub struct Registry {
    insecure: Vec<String>,
    client: std::sync::OnceLock<Result<cache::transport::registry::RegistryClient, String>>,
}

impl Registry {
    /// With `--insecure-registry` hosts added to the environment's.
    pub fn new(insecure: &[String]) -> Registry {
        Registry {
            insecure: insecure.to_vec(),
            client: std::sync::OnceLock::new(),
        }
    }

    pub fn client(&self) -> anyhow::Result<&cache::transport::registry::RegistryClient> {
        self.client
            .get_or_init(|| registry_client(&self.insecure).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}
