//! The cache protocol of one vertex, the same for every op (BuildKit's
//! `solver/jobs.go` + `scheduler.go` in one function): compute the key,
//! look it up locally, take the key's lock (another process may be running
//! the very same vertex) and look again, import it from `--cache-from`,
//! explain the miss, execute, record, and report each of these as progress.
//!
//! It knows no Dockerfile: an [`Op`] says what its key is made of and how it
//! executes, a [`Cache`] says where results are kept and how keys are
//! locked, and [`Events`] hears what happened. The builder implements them
//! for its ops over the store (`crate::vertex`); the tests below do it with
//! fake ops and an in-memory store.

use std::collections::BTreeMap;

use anyhow::anyhow;

use super::explain::{MissReason, StepRecord};

/// A vertex's cache key and what computing it found.
#[derive(Debug, Clone)]
pub struct Keyed<P> {
    pub key: String,
    /// What went into the key, by name, for `--explain-cache`.
    pub facts: BTreeMap<String, String>,
    /// What the op worked out on the way and needs to execute (selected
    /// files, downloads): computed once, for the key and the execution.
    pub prepared: P,
}

/// One kind of work: its cache map and its execution (BuildKit's `Op`).
pub trait Op {
    /// What computing the key leaves for the execution.
    type Prepared;
    /// What executing gives, and what the cache keeps.
    type Output;
    /// The vertex's key. `probe`: without side effects (no download, no
    /// reading of layers not there yet); `Ok(None)` when the key cannot be
    /// known so. Not probing, `None` is an error.
    fn cache_key(&self, probe: bool) -> anyhow::Result<Option<Keyed<Self::Prepared>>>;
    /// Refuses to execute when an input the op reads was never produced
    /// (a vertex the lazy probe skipped because this one was to hit).
    fn check_inputs(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn exec(&self, key: &str, prepared: Self::Prepared) -> anyhow::Result<Self::Output>;
}

/// Where results are kept: the local store, its key locks and the imported
/// `--cache-from` results, seen from one vertex.
pub trait Cache<V> {
    /// Held while the vertex executes: a second process waits on it.
    type Lock;
    /// The vertex's key is known (every vertex, hit or miss).
    fn keyed(&self, _record: &StepRecord) {}
    /// A usable local result.
    fn lookup(&self, key: &str) -> anyhow::Result<Option<V>>;
    /// Takes the key's lock, waiting while another holder runs the vertex.
    fn lock(&self, key: &str) -> anyhow::Result<Self::Lock>;
    /// A result imported with `--cache-from`, remembered locally.
    fn import(&self, key: &str) -> Option<V>;
    /// Why the vertex missed, from its last run's record.
    fn explain(&self, now: &StepRecord) -> MissReason;
    /// A result the build uses from the cache.
    fn hit(&self, _key: &str, _value: &V) {}
    /// Keeps what the vertex made, with the facts of its key.
    fn record(&self, key: &str, value: &V, record: &StepRecord) -> anyhow::Result<()>;
}

/// What happens to a vertex, for progress output.
pub trait Events {
    fn cached(&self);
    fn started(&self);
    fn explained(&self, reason: &MissReason);
    fn finished(&self);
    fn failed(&self, error: &anyhow::Error);
}

/// How the cache is used for one vertex.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `false` with `--no-cache` (or a `--no-cache-filter` that names it):
    /// the vertex runs whatever the cache holds.
    pub use_cache: bool,
    /// Say why a miss missed (`--explain-cache`).
    pub explain: bool,
}

/// A solved vertex.
#[derive(Debug, Clone)]
pub struct Solved<V> {
    pub key: String,
    pub value: V,
    /// Found in the cache rather than executed.
    pub cached: bool,
}

/// Runs one vertex's cache protocol. `known`: the key a probe computed for
/// the same inputs, so that it is not computed twice.
pub fn solve_vertex<O, C>(
    op: &O,
    known: Option<Keyed<O::Prepared>>,
    cache: &C,
    events: &dyn Events,
    policy: Policy,
) -> anyhow::Result<Solved<O::Output>>
where
    O: Op,
    C: Cache<O::Output>,
{
    let keyed = match known {
        Some(k) => k,
        None => op
            .cache_key(false)?
            .ok_or_else(|| anyhow!("internal: no cache key for a step that runs"))?,
    };
    let Keyed {
        key,
        facts,
        prepared,
    } = keyed;
    let record = StepRecord {
        key: key.clone(),
        facts,
    };
    cache.keyed(&record);
    let lookup = || -> anyhow::Result<Option<O::Output>> {
        if policy.use_cache {
            cache.lookup(&key)
        } else {
            Ok(None)
        }
    };
    let mut hit = lookup()?;
    // Another process on this store may be running the very same vertex:
    // take the key's lock (waiting for it), then look again, so the vertex
    // runs once and the second process finds its result.
    let mut _lock = None;
    if hit.is_none() {
        _lock = Some(cache.lock(&key)?);
        hit = lookup()?;
    }
    if hit.is_none() && policy.use_cache {
        hit = cache.import(&key);
    }
    if let Some(value) = hit {
        cache.hit(&key, &value);
        events.cached();
        return Ok(Solved {
            key,
            value,
            cached: true,
        });
    }
    op.check_inputs()?;
    events.started();
    if policy.explain {
        let reason = if policy.use_cache {
            cache.explain(&record)
        } else {
            MissReason::Disabled
        };
        events.explained(&reason);
    }
    match op.exec(&key, prepared) {
        Ok(value) => {
            events.finished();
            cache.record(&key, &value, &record)?;
            Ok(Solved {
                key,
                value,
                cached: false,
            })
        }
        Err(e) => {
            events.failed(&e);
            Err(e)
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fake ops and an in-memory store, as BuildKit's scheduler tests use.

    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    use super::*;

    /// An op whose key is `key` and whose execution counts itself and
    /// returns `value` (after `delay_ms`, to make runs overlap).
    pub struct FakeOp {
        pub key: Option<String>,
        pub value: String,
        pub runs: AtomicUsize,
        pub delay_ms: u64,
        pub fail: bool,
    }

    impl FakeOp {
        pub fn new(key: &str, value: &str) -> FakeOp {
            FakeOp {
                key: Some(key.to_string()),
                value: value.to_string(),
                runs: AtomicUsize::new(0),
                delay_ms: 0,
                fail: false,
            }
        }

        pub fn runs(&self) -> usize {
            self.runs.load(Ordering::SeqCst)
        }
    }

    impl Op for FakeOp {
        type Prepared = ();
        type Output = String;
        fn cache_key(&self, _probe: bool) -> anyhow::Result<Option<Keyed<()>>> {
            Ok(self.key.clone().map(|key| Keyed {
                facts: BTreeMap::from([("key".to_string(), key.clone())]),
                key,
                prepared: (),
            }))
        }
        fn exec(&self, _key: &str, _: ()) -> anyhow::Result<String> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(self.delay_ms));
            if self.fail {
                anyhow::bail!("exit code 1");
            }
            Ok(self.value.clone())
        }
    }

    /// A store in memory: results, key locks, a remote cache to import
    /// from and the records of last runs.
    #[derive(Default)]
    pub struct MemCache {
        pub local: Mutex<BTreeMap<String, String>>,
        pub remote: BTreeMap<String, String>,
        pub records: Mutex<Vec<StepRecord>>,
        pub locked: Mutex<BTreeSet<String>>,
        pub unlocked: Condvar,
        pub lock_waits: AtomicUsize,
    }

    /// A key lock of [`MemCache`], released on drop.
    pub struct MemLock<'a>(&'a MemCache, String);

    impl Drop for MemLock<'_> {
        fn drop(&mut self) {
            self.0.locked.lock().unwrap().remove(&self.1);
            self.0.unlocked.notify_all();
        }
    }

    impl<'a> Cache<String> for &'a MemCache {
        type Lock = MemLock<'a>;
        fn lookup(&self, key: &str) -> anyhow::Result<Option<String>> {
            Ok(self.local.lock().unwrap().get(key).cloned())
        }
        fn lock(&self, key: &str) -> anyhow::Result<MemLock<'a>> {
            let mut held = self.locked.lock().unwrap();
            while held.contains(key) {
                self.lock_waits.fetch_add(1, Ordering::SeqCst);
                held = self.unlocked.wait(held).unwrap();
            }
            held.insert(key.to_string());
            Ok(MemLock(self, key.to_string()))
        }
        fn import(&self, key: &str) -> Option<String> {
            let v = self.remote.get(key).cloned()?;
            self.local
                .lock()
                .unwrap()
                .insert(key.to_string(), v.clone());
            Some(v)
        }
        fn explain(&self, now: &StepRecord) -> MissReason {
            let last = self.records.lock().unwrap().last().cloned();
            crate::solver::explain::explain(last.as_ref(), now)
        }
        fn record(&self, key: &str, value: &String, record: &StepRecord) -> anyhow::Result<()> {
            self.local
                .lock()
                .unwrap()
                .insert(key.to_string(), value.clone());
            self.records.lock().unwrap().push(record.clone());
            Ok(())
        }
    }

    /// Events as words, in order.
    #[derive(Default)]
    pub struct Log(pub Mutex<Vec<String>>);

    impl Events for Log {
        fn cached(&self) {
            self.0.lock().unwrap().push("cached".into());
        }
        fn started(&self) {
            self.0.lock().unwrap().push("started".into());
        }
        fn explained(&self, reason: &MissReason) {
            self.0
                .lock()
                .unwrap()
                .push(format!("why: {}", reason.describe()));
        }
        fn finished(&self) {
            self.0.lock().unwrap().push("finished".into());
        }
        fn failed(&self, e: &anyhow::Error) {
            self.0.lock().unwrap().push(format!("failed: {e}"));
        }
    }

    impl Log {
        pub fn words(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{FakeOp, Log, MemCache};
    use super::*;

    const ON: Policy = Policy {
        use_cache: true,
        explain: false,
    };

    #[test]
    fn a_miss_executes_and_records_then_hits() {
        let (op, cache, log) = (
            FakeOp::new("k1", "layer"),
            MemCache::default(),
            Log::default(),
        );
        let first = solve_vertex(&op, None, &&cache, &log, ON).unwrap();
        assert!(!first.cached);
        assert_eq!((first.key.as_str(), first.value.as_str()), ("k1", "layer"));
        assert_eq!(cache.local.lock().unwrap().get("k1").unwrap(), "layer");
        let second = solve_vertex(&op, None, &&cache, &log, ON).unwrap();
        assert!(second.cached);
        assert_eq!(op.runs(), 1, "a hit does not execute");
        assert_eq!(log.words(), ["started", "finished", "cached"]);
    }

    #[test]
    fn the_cache_off_executes_every_time_and_says_why() {
        let (op, cache, log) = (FakeOp::new("k", "v"), MemCache::default(), Log::default());
        let off = Policy {
            use_cache: false,
            explain: true,
        };
        solve_vertex(&op, None, &&cache, &log, off).unwrap();
        solve_vertex(&op, None, &&cache, &log, off).unwrap();
        assert_eq!(op.runs(), 2);
        assert_eq!(
            log.words()[1],
            format!("why: {}", MissReason::Disabled.describe())
        );
    }

    #[test]
    fn a_miss_is_explained_against_the_last_run() {
        let cache = MemCache::default();
        let log = Log::default();
        let explain = Policy {
            use_cache: true,
            explain: true,
        };
        solve_vertex(&FakeOp::new("old", "v"), None, &&cache, &log, explain).unwrap();
        solve_vertex(&FakeOp::new("new", "v"), None, &&cache, &log, explain).unwrap();
        let words = log.words();
        assert_eq!(
            words[1],
            format!("why: {}", MissReason::FirstRun.describe())
        );
        let records = cache.records.lock().unwrap().clone();
        assert!(
            matches!(
                crate::solver::explain::explain(Some(&records[0]), &records[1]),
                MissReason::Changed(_)
            ),
            "{words:?}"
        );
        assert_ne!(words[4], words[1], "the second miss names a change");
    }

    #[test]
    fn an_imported_result_is_used_and_kept_locally() {
        let op = FakeOp::new("k", "mine");
        let cache = MemCache {
            remote: [("k".to_string(), "theirs".to_string())].into(),
            ..MemCache::default()
        };
        let log = Log::default();
        let s = solve_vertex(&op, None, &&cache, &log, ON).unwrap();
        assert!(s.cached);
        assert_eq!(s.value, "theirs");
        assert_eq!(op.runs(), 0);
        assert_eq!(cache.local.lock().unwrap().get("k").unwrap(), "theirs");
        // --no-cache reads no imported cache either.
        let off = Policy {
            use_cache: false,
            explain: false,
        };
        assert!(!solve_vertex(&op, None, &&cache, &log, off).unwrap().cached);
    }

    #[test]
    fn two_solvers_of_one_key_execute_it_once() {
        let op = FakeOp {
            delay_ms: 200,
            ..FakeOp::new("shared", "v")
        };
        let cache = MemCache::default();
        let logs = [Log::default(), Log::default()];
        let solved: Vec<Solved<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = logs
                .iter()
                .map(|log| s.spawn(|| solve_vertex(&op, None, &&cache, log, ON).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(op.runs(), 1, "the second waits on the lock, then hits");
        assert_eq!(solved.iter().filter(|s| s.cached).count(), 1);
        assert!(solved.iter().all(|s| s.value == "v"));
        assert!(cache.lock_waits.load(std::sync::atomic::Ordering::SeqCst) > 0);
    }

    #[test]
    fn a_failure_is_reported_and_not_recorded() {
        let op = FakeOp {
            fail: true,
            ..FakeOp::new("k", "v")
        };
        let (cache, log) = (MemCache::default(), Log::default());
        let e = solve_vertex(&op, None, &&cache, &log, ON).unwrap_err();
        assert_eq!(e.to_string(), "exit code 1");
        assert!(cache.local.lock().unwrap().is_empty());
        assert_eq!(log.words(), ["started", "failed: exit code 1"]);
    }

    #[test]
    fn a_known_key_is_not_computed_again() {
        // The probe's key is used as is: the op's own would be another.
        let op = FakeOp::new("computed", "v");
        let known = Keyed {
            key: "probed".to_string(),
            facts: Default::default(),
            prepared: (),
        };
        let cache = MemCache::default();
        let s = solve_vertex(&op, Some(known), &&cache, &Log::default(), ON).unwrap();
        assert_eq!(s.key, "probed");
        // An op with no key cannot run.
        let keyless = FakeOp {
            key: None,
            ..FakeOp::new("", "")
        };
        assert!(solve_vertex(&keyless, None, &&cache, &Log::default(), ON).is_err());
    }
}
