//! Not running what the build does not need, as BuildKit's lazy solve
//! does: a vertex whose result only feeds vertices that hit the cache is
//! never run (nor its layers downloaded).
//!
//! Before the scheduler starts, every vertex's key is probed with the
//! op's own [`Op::cache_key`](super::solve::Op::cache_key) in probe mode
//! and looked up; [`needed`] then walks back from the target: a vertex is
//! needed when a needed vertex builds on it (its first input) or reads it
//! (its other inputs) and misses. A probe that cannot know a key only makes
//! more vertices needed, never fewer.

use super::schedule::Node;

/// Which vertices must run: the target, what a needed vertex builds on,
/// and what a needed vertex reads when it misses (`hits[i]`: vertex `i`'s
/// key is in the cache, so its reads are not needed). Vertices the
/// scheduler runs once for several places (same digest) are needed if any
/// place needs them.
pub fn needed<T>(nodes: &[Node<T>], target: usize, hits: &[bool]) -> Vec<bool> {
    let n = nodes.len();
    let mut needed = vec![false; n];
    needed[target] = true;
    loop {
        for i in (0..n).rev() {
            if !needed[i] {
                continue;
            }
            for (k, d) in nodes[i].deps.iter().enumerate() {
                if k == 0 || !hits[i] {
                    needed[*d] = true;
                }
            }
        }
        let mut changed = false;
        for i in 0..n {
            if needed[i] {
                continue;
            }
            let twin_needed = nodes
                .iter()
                .enumerate()
                .any(|(j, o)| needed[j] && o.digest == nodes[i].digest);
            if twin_needed {
                needed[i] = true;
                changed = true;
            }
        }
        if !changed {
            return needed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::schedule;
    use crate::solver::solve::testing::{FakeOp, Log, MemCache};
    use crate::solver::solve::{Op, Policy, solve_vertex};

    fn node(deps: Vec<usize>, digest: &str) -> Node<()> {
        Node {
            op: (),
            deps,
            digest: digest.to_string(),
        }
    }

    /// Stage A (0: base, 1: RUN); stage B (2: base, 3: COPY --from=A, the
    /// target).
    fn graph(twin_of_1: bool) -> (Vec<Node<()>>, usize) {
        let mut nodes = vec![
            node(vec![], "a0"),
            node(vec![0], "a1"),
            node(vec![], "b0"),
            node(vec![2, 1], "b1"),
        ];
        if !twin_of_1 {
            return (nodes, 3);
        }
        // Stage B also runs the very same RUN as stage A, on its own.
        nodes.push(node(vec![3, 5], "b2"));
        nodes.push(node(vec![0], "a1"));
        (nodes, 4)
    }

    fn hits(n: usize, hit: &[usize]) -> Vec<bool> {
        (0..n).map(|i| hit.contains(&i)).collect()
    }

    #[test]
    fn a_hit_does_not_need_the_stage_it_reads() {
        let (nodes, t) = graph(false);
        assert_eq!(
            needed(&nodes, t, &hits(4, &[3])),
            [false, false, true, true]
        );
        assert_eq!(needed(&nodes, t, &hits(4, &[])), [true; 4]);
        // The source's own cache state does not matter, only the reader's.
        assert_eq!(needed(&nodes, t, &hits(4, &[1])), [true; 4]);
    }

    #[test]
    fn work_shared_with_a_needed_place_is_needed_everywhere() {
        let (nodes, t) = graph(true);
        // 4 misses and reads 5, the twin of 1: so 1 (and its base) run too.
        let n = needed(&nodes, t, &hits(6, &[3]));
        assert!(n[5] && n[1] && n[0], "{n:?}");
    }

    /// A source two steps read (an `ADD` URL), planned after them: needed
    /// only while a reader misses, and run once for both.
    #[test]
    fn a_source_planned_after_its_readers_is_needed_and_run_once() {
        // 0: base, 1: ADD url (reads 3), 2: ADD url again (reads 3, the
        // target), 3: the URL's source vertex.
        let nodes = vec![
            node(vec![], "s0"),
            node(vec![0, 3], "s1"),
            node(vec![1, 3], "s2"),
            node(vec![], "url"),
        ];
        assert_eq!(needed(&nodes, 2, &hits(4, &[])), [true; 4]);
        assert_eq!(
            needed(&nodes, 2, &hits(4, &[1, 2])),
            [true, true, true, false],
            "both readers hit: nothing is fetched"
        );
        assert_eq!(needed(&nodes, 2, &hits(4, &[2])), [true; 4]);
        let runs: Vec<std::sync::atomic::AtomicUsize> =
            (0..4).map(|_| Default::default()).collect();
        let out = schedule::run(&nodes, &[2], 2, |i, _, inputs: &[String]| {
            runs[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, anyhow::Error>(format!("{i}({})", inputs.join(",")))
        })
        .unwrap();
        assert_eq!(out[2].as_deref(), Some("2(1(0(),3()),3())"));
        let runs: Vec<usize> = runs
            .iter()
            .map(|r| r.load(std::sync::atomic::Ordering::SeqCst))
            .collect();
        assert_eq!(runs, [1, 1, 1, 1]);
    }

    /// The whole lazy solve with fake ops: probe every key, keep what is
    /// needed, schedule, and solve each needed vertex with the cache
    /// protocol. A target that hits never executes the stage it copies
    /// from, and says CACHED.
    #[test]
    fn a_cached_reader_skips_its_source_stage() {
        let (nodes, target) = graph(false);
        let ops: Vec<FakeOp> = ["a0", "a1", "b0", "b1"]
            .iter()
            .map(|k| FakeOp::new(k, k))
            .collect();
        let cache = MemCache::default();
        cache
            .local
            .lock()
            .unwrap()
            .insert("b1".into(), "from-cache".into());
        let probed: Vec<bool> = ops
            .iter()
            .map(|op| {
                let key = op.cache_key(true).unwrap().map(|k| k.key);
                key.is_some_and(|k| cache.local.lock().unwrap().contains_key(&k))
            })
            .collect();
        let needed = needed(&nodes, target, &probed);
        let log = Log::default();
        let policy = Policy {
            use_cache: true,
            explain: false,
        };
        let out = schedule::run(&nodes, &[target], 2, |i, _, _: &[String]| {
            if !needed[i] {
                return Ok::<_, anyhow::Error>("skipped".to_string());
            }
            solve_vertex(&ops[i], None, &&cache, &log, policy).map(|s| s.value)
        })
        .unwrap();
        assert_eq!(out[target].as_deref(), Some("from-cache"));
        assert_eq!(ops[0].runs() + ops[1].runs(), 0, "stage A never ran");
        assert_eq!(ops[2].runs(), 1, "the target's own base runs");
        assert!(log.words().contains(&"cached".to_string()));
    }
}
