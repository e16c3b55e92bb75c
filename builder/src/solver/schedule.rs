//! A generic parallel scheduler over a DAG of vertices.
//!
//! It knows nothing about Dockerfiles: a vertex is an opaque value with the
//! indices of the vertices it depends on and a definition digest. The
//! scheduler
//!
//! * runs only what the requested targets reach,
//! * runs a vertex once all its dependencies succeeded, at most `jobs` at a
//!   time, on scoped std threads (a step mostly waits on a sandboxed process
//!   or on I/O, so plain threads are the right tool, not a work-stealing pool),
//! * runs vertices with the same definition digest once and hands every
//!   duplicate the same output,
//! * stops starting new vertices at the first failure, lets the running ones
//!   finish, and returns that failure with the index of the vertex that
//!   failed.

use crate::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};

/// One vertex of the graph.
#[derive(Debug, Clone)]
pub struct Node<T> {
    pub op: T,
    pub deps: Vec<usize>,
    /// Two nodes with the same digest are the same work.
    pub digest: String,
}

/// A vertex that failed, and why.
#[derive(Debug)]
pub struct Failure<E> {
    pub vertex: usize,
    pub error: E,
}

/// The outputs of a run, indexed like the input nodes (`None` for vertices
/// the targets do not need).
pub type Outputs<O> = Vec<Option<O>>;

struct State<O, E> {
    ready: VecDeque<usize>,
    pending: Vec<usize>,
    outputs: Vec<Option<O>>,
    running: usize,
    failure: Option<Failure<E>>,
    remaining: usize,
}

/// Runs `nodes` (only what `targets` need) with at most `jobs` vertices at a
/// time. `run(i, op, inputs)` gets the outputs of the vertex's dependencies in
/// `deps` order.
pub fn run<T, O, E, F>(
    nodes: &[Node<T>],
    targets: &[usize],
    jobs: usize,
    run: F,
) -> Result<Outputs<O>, Failure<E>>
where
    T: Sync,
    O: Clone + Send + Sync,
    E: Send,
    F: Fn(usize, &T, &[O]) -> Result<O, E> + Sync,
{
    let jobs = jobs.max(1);
    let n = nodes.len();
    // Canonical representative of each digest: the first needed node.
    let needed = reachable(nodes, targets);
    let mut canon: Vec<usize> = (0..n).collect();
    let mut by_digest: HashMap<&str, usize> = HashMap::new();
    for i in (0..n).filter(|&i| needed[i]) {
        let c = *by_digest.entry(nodes[i].digest.as_str()).or_insert(i);
        canon[i] = c;
    }
    // Dependency edges between canonical nodes only.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    let mut remaining = 0;
    for i in (0..n).filter(|&i| needed[i] && canon[i] == i) {
        remaining += 1;
        let mut ds: Vec<usize> = nodes[i].deps.iter().map(|&d| canon[d]).collect();
        ds.sort_unstable();
        ds.dedup();
        pending[i] = ds.len();
        for d in ds {
            dependents[d].push(i);
        }
    }
    let ready: VecDeque<usize> = (0..n)
        .filter(|&i| needed[i] && canon[i] == i && pending[i] == 0)
        .collect();
    let state = Mutex::new(State {
        ready,
        pending,
        outputs: (0..n).map(|_| None).collect(),
        running: 0,
        failure: None,
        remaining,
    });
    let wake = Condvar::new();

    std::thread::scope(|s| {
        for _ in 0..jobs.min(remaining.max(1)) {
            s.spawn(|| {
                loop {
                    let (i, inputs) = {
                        let mut st = lock(&state);
                        loop {
                            if st.failure.is_some() || st.remaining == 0 {
                                wake.notify_all();
                                return;
                            }
                            if let Some(i) = st.ready.pop_front() {
                                let inputs: Vec<O> = nodes[i]
                                    .deps
                                    .iter()
                                    .map(|&d| {
                                        st.outputs[canon[d]].clone().expect("dependency finished")
                                    })
                                    .collect();
                                st.running += 1;
                                break (i, inputs);
                            }
                            st = wake.wait(st).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    let result = run(i, &nodes[i].op, &inputs);
                    let mut st = lock(&state);
                    st.running -= 1;
                    st.remaining -= 1;
                    match result {
                        Ok(o) => {
                            st.outputs[i] = Some(o);
                            for &d in &dependents[i] {
                                st.pending[d] -= 1;
                                if st.pending[d] == 0 {
                                    st.ready.push_back(d);
                                }
                            }
                        }
                        Err(error) => {
                            if st.failure.is_none() {
                                st.failure = Some(Failure { vertex: i, error });
                            }
                        }
                    }
                    wake.notify_all();
                }
            });
        }
    });

    let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = st.failure {
        return Err(f);
    }
    let mut outputs = st.outputs;
    for i in 0..n {
        if needed[i] && canon[i] != i {
            outputs[i] = outputs[canon[i]].clone();
        }
    }
    Ok(outputs)
}

/// Which nodes the targets need (targets and their transitive deps).
pub fn reachable<T>(nodes: &[Node<T>], targets: &[usize]) -> Vec<bool> {
    let mut seen = vec![false; nodes.len()];
    let mut stack: Vec<usize> = targets.to_vec();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        stack.extend(nodes[i].deps.iter().copied());
    }
    seen
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn node(name: &str, deps: &[usize]) -> Node<String> {
        Node {
            op: name.to_string(),
            deps: deps.to_vec(),
            digest: name.to_string(),
        }
    }

    #[test]
    fn dependencies_run_first_and_inputs_arrive_in_order() {
        let nodes = vec![
            node("a", &[]),
            node("b", &[0]),
            node("c", &[0]),
            node("d", &[2, 1]),
        ];
        let out = run(&nodes, &[3], 4, |_, op, inputs: &[String]| {
            Ok::<_, ()>(format!("{op}({})", inputs.join(",")))
        })
        .unwrap();
        assert_eq!(out[3].as_deref(), Some("d(c(a()),b(a()))"));
    }

    #[test]
    fn unneeded_vertices_never_run() {
        let nodes = vec![node("a", &[]), node("broken", &[]), node("c", &[0])];
        let out = run(&nodes, &[2], 2, |_, op, _: &[()]| {
            if op == "broken" { Err("boom") } else { Ok(()) }
        })
        .unwrap();
        assert!(out[1].is_none() && out[2].is_some());
    }

    #[test]
    fn parallelism_is_bounded_and_used() {
        let nodes: Vec<_> = (0..8).map(|i| node(&format!("n{i}"), &[])).collect();
        let targets: Vec<usize> = (0..8).collect();
        for jobs in [1, 3] {
            let now = AtomicUsize::new(0);
            let peak = AtomicUsize::new(0);
            run(&nodes, &targets, jobs, |_, _, _: &[()]| {
                let c = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(c, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(())
            })
            .unwrap();
            assert_eq!(peak.load(Ordering::SeqCst), jobs, "jobs={jobs}");
        }
    }

    #[test]
    fn identical_vertices_run_once() {
        let mut nodes = vec![
            node("base", &[]),
            node("x", &[0]),
            node("x", &[0]),
            node("join", &[1, 2]),
        ];
        nodes[2].digest = "x".into();
        let count = AtomicUsize::new(0);
        let out = run(&nodes, &[3], 4, |_, op, inputs: &[usize]| {
            if op == "x" {
                count.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, ()>(inputs.iter().sum::<usize>() + 1)
        })
        .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(out[1], out[2]);
        assert_eq!(out[3], Some(5));
    }

    #[test]
    fn failure_stops_the_rest() {
        // a fails; b (independent, slow) is already running and finishes;
        // c depends on a and must never start; d is queued behind b with jobs=2.
        let nodes = vec![
            node("a", &[]),
            node("b", &[]),
            node("c", &[0]),
            node("d", &[1]),
        ];
        let started = Mutex::new(Vec::new());
        let err = run(&nodes, &[2, 3], 2, |_, op, _: &[()]| {
            lock(&started).push(op.clone());
            if op == "a" {
                return Err(format!("{op} failed"));
            }
            std::thread::sleep(Duration::from_millis(50));
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.vertex, 0);
        assert_eq!(err.error, "a failed");
        let started = started.into_inner().unwrap();
        assert!(!started.contains(&"c".to_string()), "{started:?}");
        assert!(!started.contains(&"d".to_string()), "{started:?}");
    }
}
