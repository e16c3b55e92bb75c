//! A few blob transfers at a time: enough to hide registry latency and keep
//! both cores hashing, few enough not to open dozens of connections. One
//! small helper so pull and push share the same bounded, fail-fast
//! behaviour.

use std::sync::Mutex;

use super::error::{RegistryError, Result};

/// How many transfers run at once.
pub const TRANSFER_WORKERS: usize = 3;

/// Runs `f` on every item with at most `workers` threads and returns the
/// results in the items' order. After the first error no new item starts
/// (those already running finish), and that error is returned.
pub fn for_each_bounded<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    for_each_bounded_as(items, workers, f)
}

/// [`for_each_bounded`] for work whose errors are of another type (the
/// builder's, say, when it unpacks several base layers at once).
pub fn for_each_bounded_as<T: Sync, R: Send, E: Send + From<RegistryError>>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> std::result::Result<R, E> + Sync,
) -> std::result::Result<Vec<R>, E> {
    let queue = Mutex::new(items.iter().enumerate());
    let results: Mutex<Vec<(usize, std::result::Result<R, E>)>> =
        Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..workers.max(1).min(items.len()) {
            s.spawn(|| {
                loop {
                    let next = match queue.lock() {
                        Ok(mut q) => q.next(),
                        Err(_) => None,
                    };
                    let Some((i, item)) = next else { break };
                    let r = f(item);
                    let failed = r.is_err();
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                    if failed {
                        if let Ok(mut q) = queue.lock() {
                            for _ in q.by_ref() {}
                        }
                        break;
                    }
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| RegistryError::Other("a transfer thread panicked".into()))?;
    results.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(results.len());
    for (_, r) in results {
        out.push(r?);
    }
    if out.len() != items.len() {
        return Err(
            RegistryError::Other("a transfer thread stopped without a result".into()).into(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_stops_on_error() {
        let items: Vec<u32> = (0..20).collect();
        let out = for_each_bounded(&items, 3, |x| Ok(x * 2)).expect("all ok");
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let started = std::sync::atomic::AtomicUsize::new(0);
        let err = for_each_bounded(&items, 1, |x| {
            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if *x == 3 {
                Err(RegistryError::Other(format!("item {x} failed")))
            } else {
                Ok(*x)
            }
        })
        .expect_err("item 3 fails");
        assert_eq!(err.to_string(), "item 3 failed");
        assert_eq!(
            started.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "nothing after the failure"
        );
        assert!(
            for_each_bounded(&Vec::<u32>::new(), 3, |x| Ok(*x))
                .expect("empty")
                .is_empty()
        );
    }
}
