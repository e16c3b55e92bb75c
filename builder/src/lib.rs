//! The `strata` binary's library half: the command line, the solver that runs
//! a build graph in parallel against the cache, progress output and the
//! wiring of outputs. Parsing lives in `frontend`, storage in `cache`,
//! sandboxes in `runtime`; this crate only joins them.
//!
//! A build goes through four layers, as in BuildKit:
//!
//! * [`pipeline`] reads the Dockerfile, lowers it (`frontend`) and *plans*
//!   it: a list of vertices, each carrying its op (a stage's base, a RUN,
//!   a COPY/ADD/WORKDIR, or a source a step reads: a URL, a git
//!   repository, an image `COPY --from` names, the files a COPY/ADD
//!   selects from the context or a named directory) and the indices of its
//!   inputs; then it probes
//!   which vertices the target needs, runs them and assembles the image.
//! * `vertex` holds the *ops with keys*: one file per op kind (exec,
//!   file, source, local) with its cache map (what its key is made of) and its
//!   execution, plus the store-backed cache the solver asks.
//! * [`solver`] knows no Dockerfile: it schedules vertices in parallel
//!   (`schedule`), runs each one's *cache protocol* (`solve`: key, local
//!   lookup, key lock, lookup again, `--cache-from` import, explain,
//!   execute, record, progress), decides what a lazy build can skip
//!   (`lazy`) and says why a step missed (`explain`).
//! * [`ops`] is the *worker* (`ops::exec::Executor`): base layers fetched
//!   lazily and unpacked once per diff_id into `<root>/snapshots/layer-<hex>`,
//!   RUN in the runtime's sandbox over a snapshot of those layer
//!   directories, COPY/ADD/WORKDIR written straight into a new layer
//!   directory, and `COPY --from` read in place from the source's layer
//!   directories inside the build's user namespace. A layer built here
//!   *is* its directory plus a streamed diff_id (`ops::commit`): nothing is
//!   compressed while building; [`output`] makes the blobs an output
//!   needs, once each.

pub mod cli;
pub mod context;
pub mod ops;
pub mod options;
pub mod output;
pub mod pipeline;
pub mod platform;
pub mod progress;
pub mod solver;
pub(crate) mod vertex;

/// The one refusal for a path that is not built yet, worded like the CLI's
/// (`cli::not_yet`), so a library module can refuse without reaching into
/// the command line.
pub(crate) fn not_supported(what: &str) -> anyhow::Error {
    anyhow::anyhow!("not supported yet: {what}")
}

/// An I/O error's words for a message a user reads (`Permission denied`),
/// without Rust's ` (os error 13)` suffix.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    without_os_error_numbers(&e.to_string())
}

/// An error and its causes as a person reads them (`{:#}`: outermost
/// first, joined by `: `), without the ` (os error N)` that Rust's I/O
/// errors add wherever they sit in the chain.
pub fn error_text(e: &anyhow::Error) -> String {
    without_os_error_numbers(&format!("{e:#}"))
}

/// `s` with every ` (os error <digits>)` removed.
fn without_os_error_numbers(s: &str) -> String {
    const MARK: &str = " (os error ";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(MARK) {
        let after = &rest[i + MARK.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..i + MARK.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Locks a mutex, also when a thread panicked while holding it: the data
/// behind the build's mutexes (results, records, output tails) stays
/// usable, and one panicking step must not hide every other step's error.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

#[cfg(test)]
mod tests {
    #[test]
    fn os_error_numbers_are_dropped_wherever_they_are() {
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(36))
            .context("cannot walk /ctx/a")
            .context("COPY . /x");
        assert_eq!(
            super::error_text(&e),
            "COPY . /x: cannot walk /ctx/a: File name too long"
        );
        assert_eq!(
            super::without_os_error_numbers("a (os error x) b (os error 2)"),
            "a (os error x) b"
        );
    }
}
