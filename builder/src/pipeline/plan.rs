//! The build graph as solver vertices: one source vertex per stage (its
//! base) and one vertex per filesystem step, chained in order; a stage base
//! or `COPY --from` of another stage depends on that stage's last vertex.
//! An `ADD` of URLs or of a git repository, a `COPY --from=<image>`, and a
//! COPY/ADD from the build context or a `--build-context name=DIR` (what it
//! selects there: sources, excludes, destination) reads a source vertex of
//! its own (one per distinct source, however many steps read it), which
//! fetches, resolves or selects it; those come after every
//! stage's vertices, so a step's index (its progress number) does not
//! depend on them.

use anyhow::anyhow;
use frontend::{Base, BuildGraph, CopySource, Op};

use crate::options::NamedContextSource;
use crate::solver::cache_key::definition_digest;
use crate::solver::schedule::Node;

/// The `--build-context` sources by (lower-case) name.
pub type Named = std::collections::BTreeMap<String, NamedContextSource>;

/// What a vertex does: a source (a stage's base) or a filesystem step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VertexOp {
    /// `FROM scratch`: no layers.
    Scratch,
    /// `FROM <stage>`: that stage's state, passed on (its only input).
    Stage,
    /// `FROM <image>` at a manifest digest.
    Image { reference: String, digest: String },
    /// RUN (an exec op) or COPY/ADD/WORKDIR (a file op).
    Step(Box<frontend::Op>),
    /// `ADD <url>…`: the files downloaded, checked against `checksum`.
    Http {
        urls: Vec<String>,
        checksum: Option<String>,
    },
    /// `ADD <git repository>`: the tree at `reference` (under `subdir`).
    Git {
        repository: String,
        reference: Option<String>,
        subdir: Option<String>,
        keep_git_dir: bool,
    },
    /// `COPY --from=<image>`: the image, resolved when the build runs.
    CopyImage { reference: String },
    /// What a COPY/ADD selects from the build context (`dir`: none) or a
    /// `--build-context name=DIR` (`vertex::local`).
    Local {
        dir: Option<std::path::PathBuf>,
        sources: Vec<String>,
        /// The destination the selection is made for.
        dest: String,
        excludes: Vec<String>,
        parents: bool,
    },
}

impl VertexOp {
    /// The source vertex a step reads (a URL, git repository or image,
    /// also a `--build-context` standing for an image), if it reads one.
    pub(crate) fn read_source(step: &frontend::Op, named: &Named) -> Option<VertexOp> {
        let Op::File(f) = step else { return None };
        if f.kind == frontend::FileKind::Mkdir {
            return None;
        }
        match &f.from {
            CopySource::Http => Some(VertexOp::Http {
                urls: f.sources.clone(),
                checksum: f.checksum.clone(),
            }),
            CopySource::Git {
                repository,
                reference,
                subdir,
            } => Some(VertexOp::Git {
                repository: repository.clone(),
                reference: reference.clone(),
                subdir: subdir.clone(),
                keep_git_dir: f.keep_git_dir,
            }),
            CopySource::Image { reference } => Some(VertexOp::CopyImage {
                reference: reference.clone(),
            }),
            CopySource::Context if !f.sources.is_empty() => Some(Self::local(f, None)),
            // Resolved through the name (`Ctx::real_ref`).
            CopySource::Named { name } => match named.get(&name.to_ascii_lowercase()) {
                Some(NamedContextSource::Image(_) | NamedContextSource::OciLayout(_)) => {
                    Some(VertexOp::CopyImage {
                        reference: name.clone(),
                    })
                }
                Some(NamedContextSource::Dir(dir)) => Some(Self::local(f, Some(dir.clone()))),
                _ => None,
            },
            _ => None,
        }
    }

    /// The local source of a COPY/ADD reading `dir` (none: the context).
    fn local(f: &frontend::FileOp, dir: Option<std::path::PathBuf>) -> VertexOp {
        VertexOp::Local {
            dir,
            sources: f.sources.clone(),
            dest: crate::vertex::file::key_dest(f),
            excludes: f.exclude.clone(),
            parents: f.parents,
        }
    }

    /// Whether it is a source a step reads (planned after the steps).
    pub(crate) fn is_read_source(&self) -> bool {
        matches!(
            self,
            VertexOp::Http { .. }
                | VertexOp::Git { .. }
                | VertexOp::CopyImage { .. }
                | VertexOp::Local { .. }
        )
    }

    /// A read source's definition: what it is, whatever it fetches.
    pub(crate) fn fetch_definition(&self) -> serde_json::Value {
        match self {
            VertexOp::Http { urls, checksum } => {
                serde_json::json!({"source": "http", "urls": urls, "checksum": checksum})
            }
            VertexOp::Git {
                repository,
                reference,
                subdir,
                keep_git_dir,
            } => serde_json::json!({
                "source": "git", "repository": repository, "ref": reference,
                "subdir": subdir, "keep_git_dir": keep_git_dir,
            }),
            VertexOp::CopyImage { reference } => {
                serde_json::json!({"source": "copy-image", "ref": reference})
            }
            VertexOp::Local {
                dir,
                sources,
                dest,
                excludes,
                parents,
            } => serde_json::json!({
                "source": "local", "dir": dir, "sources": sources, "dest": dest,
                "excludes": excludes, "parents": parents,
            }),
            _ => serde_json::Value::Null,
        }
    }
}

/// One vertex of the plan: its op and what the build says of it, with no
/// index back into the frontend's graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vertex {
    pub op: VertexOp,
    /// `[stage 2/5] RUN make`, as BuildKit prints it.
    pub name: String,
    /// The instruction as written, for `--explain-cache`.
    pub instruction: String,
    pub line: usize,
    pub column: usize,
    /// Its stage's name, and its id (what `--no-cache-filter` names).
    pub stage_name: Option<String>,
    pub stage_id: usize,
    /// Its index among the stage's steps (a base: none).
    pub step: Option<usize>,
}

impl Vertex {
    /// Whether it is a filesystem step (not a stage's base).
    pub fn is_step(&self) -> bool {
        matches!(self.op, VertexOp::Step(_))
    }

    /// Where the step is in the Dockerfile, without this checkout's paths:
    /// its stage (name, else id) and index. Its record is compared with
    /// the last run's under this name (behind the context and Dockerfile
    /// paths locally; as is in an exported cache).
    pub fn place(&self) -> String {
        format!(
            "{}\0{}",
            self.stage_name
                .clone()
                .unwrap_or_else(|| self.stage_id.to_string()),
            self.step.unwrap_or_default()
        )
    }

    /// `Dockerfile:12:1: [build 2/5] RUN make` for errors.
    pub fn describe(&self, file: &str) -> String {
        format!("{file}:{}:{}: {}", self.line, self.column, self.name)
    }
}

pub struct Plan {
    pub nodes: Vec<Node<Vertex>>,
    pub target: usize,
    /// How many vertices the stages have (the sources steps read follow):
    /// progress numbers the build's later tasks after them.
    pub staged: usize,
}

/// Plans `graph`; `named`: the `--build-context` sources by name.
pub fn plan(graph: &BuildGraph, named: &Named) -> anyhow::Result<Plan> {
    let mut nodes: Vec<Node<Vertex>> = Vec::new();
    // The sources steps read, placed after the stages' vertices (index
    // `staged + k`), one per distinct definition.
    let staged: usize = graph.stages.iter().map(|s| s.steps.len() + 1).sum();
    let mut fetches: Vec<Node<Vertex>> = Vec::new();
    let mut last_of: std::collections::HashMap<usize, usize> = Default::default();
    for (si, st) in graph.stages.iter().enumerate() {
        let base = base_node(graph, si, &last_of, &nodes)?;
        nodes.push(base);
        let mut prev = nodes.len() - 1;
        for (k, step) in st.steps.iter().enumerate() {
            let mut deps = vec![prev];
            // RUN --mount=…,from=<stage>: one input per such mount, in order.
            if let Op::Exec(e) = &step.op {
                for id in e.mounts.iter().filter_map(|m| m.from_stage) {
                    deps.push(*last_of.get(&id).ok_or_else(|| {
                        anyhow!("internal: stage {id} used before it is planned")
                    })?);
                }
            }
            if let Op::File(f) = &step.op
                && let CopySource::Stage { id } = &f.from
            {
                deps.push(
                    *last_of
                        .get(id)
                        .ok_or_else(|| anyhow!("internal: stage {id} used before it is planned"))?,
                );
            }
            let vertex = Vertex {
                op: VertexOp::Step(Box::new(step.op.clone())),
                name: format!(
                    "[{}{}/{}] {}",
                    stage_label(graph, si),
                    k + 2,
                    st.steps.len() + 1,
                    step.original
                ),
                instruction: step.original.clone(),
                line: step.line,
                column: step.column,
                stage_name: st.name.clone(),
                stage_id: st.id,
                step: Some(k),
            };
            if let Some(op) = VertexOp::read_source(&step.op, named) {
                deps.push(staged + fetch_vertex(&mut fetches, op, &vertex));
            }
            let op_digest = definition_digest(&serde_json::to_value(&step.op)?);
            let digest = format!(
                "{op_digest}<-{}",
                deps.iter()
                    .map(|d| match d.checked_sub(staged) {
                        Some(k) => fetches[k].digest.as_str(),
                        None => nodes[*d].digest.as_str(),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let digest = definition_digest(&serde_json::Value::String(digest));
            nodes.push(Node {
                op: vertex,
                deps,
                digest,
            });
            prev = nodes.len() - 1;
        }
        last_of.insert(st.id, prev);
    }
    if nodes.len() != staged {
        return Err(anyhow!(
            "internal: the plan's stages have {} vertices, not {staged}",
            nodes.len()
        ));
    }
    nodes.extend(fetches);
    let target_stage = graph
        .target_stage()
        .ok_or_else(|| anyhow!("internal: the graph has no target stage"))?;
    let target = *last_of
        .get(&target_stage.id)
        .ok_or_else(|| anyhow!("internal: target not planned"))?;
    Ok(Plan {
        nodes,
        target,
        staged,
    })
}

/// The vertex of stage `si`'s base: scratch, an image, or another
/// stage's last vertex (`last_of`) passed on.
fn base_node(
    graph: &BuildGraph,
    si: usize,
    last_of: &std::collections::HashMap<usize, usize>,
    nodes: &[Node<Vertex>],
) -> anyhow::Result<Node<Vertex>> {
    let st = &graph.stages[si];
    let (deps, def) = match &st.base {
        Base::Stage { id } => {
            let d = *last_of
                .get(id)
                .ok_or_else(|| anyhow!("internal: stage {id} used before it is planned"))?;
            (vec![d], format!("stage:{}", nodes[d].digest))
        }
        Base::Scratch => (vec![], "scratch".to_string()),
        Base::Image {
            reference, digest, ..
        } => (vec![], format!("image:{reference}@{digest}")),
    };
    let op = match &st.base {
        Base::Stage { .. } => VertexOp::Stage,
        Base::Scratch => VertexOp::Scratch,
        Base::Image {
            reference, digest, ..
        } => VertexOp::Image {
            reference: reference.clone(),
            digest: digest.clone(),
        },
    };
    Ok(Node {
        op: Vertex {
            op,
            name: base_name(graph, si),
            instruction: String::new(),
            line: st.line,
            column: st.column,
            stage_name: st.name.clone(),
            stage_id: st.id,
            step: None,
        },
        deps,
        digest: def,
    })
}

/// The index among `fetches` of the source vertex `op` (added, named
/// after the first step reading it, if it is new): a URL, repository or
/// image several steps read is fetched or resolved once.
fn fetch_vertex(fetches: &mut Vec<Node<Vertex>>, op: VertexOp, reader: &Vertex) -> usize {
    let digest = definition_digest(&op.fetch_definition());
    if let Some(k) = fetches.iter().position(|n| n.digest == digest) {
        return k;
    }
    fetches.push(Node {
        op: Vertex {
            op,
            step: None,
            ..reader.clone()
        },
        deps: Vec::new(),
        digest,
    });
    fetches.len() - 1
}

/// BuildKit's step prefix: the stage name, `stage-N` for an unnamed stage
/// among several, nothing for a single unnamed stage (`[2/5]`).
fn stage_label(graph: &BuildGraph, stage: usize) -> String {
    let st = &graph.stages[stage];
    match &st.name {
        Some(n) => format!("{n} "),
        None if graph.stages.len() > 1 => format!("stage-{} ", st.id),
        None => String::new(),
    }
}

/// `[stage 1/5] FROM busybox` as BuildKit prints it.
fn base_name(graph: &BuildGraph, stage: usize) -> String {
    let st = &graph.stages[stage];
    let label = stage_label(graph, stage);
    let n = st.steps.len() + 1;
    match &st.base {
        Base::Image { reference, .. } => format!("[{label}1/{n}] FROM {reference}"),
        Base::Scratch => format!("[{label}1/{n}] FROM scratch"),
        Base::Stage { id } => format!("[{label}1/{n}] FROM stage {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(df: &str, target: Option<&str>) -> BuildGraph {
        let parsed = frontend::parse("Dockerfile", df).expect("parses");
        let opts = frontend::BuildOptions {
            target: target.map(str::to_string),
            ..Default::default()
        };
        frontend::lower(&parsed, &opts, &frontend::EmptyResolver).expect("lowers")
    }

    #[test]
    fn stages_chain_and_copy_from_depends_on_the_source_stage() {
        let g = graph(
            "FROM busybox AS a\nRUN echo a\nFROM busybox AS b\nRUN echo b\nFROM a\nCOPY --from=b /x /x\nRUN echo c\n",
            None,
        );
        let p = plan(&g, &Named::new()).unwrap();
        // a: base + run; b: base + run; final: base(stage a) + copy + run
        assert_eq!(p.nodes.len(), 7);
        let copy = p
            .nodes
            .iter()
            .position(|n| n.op.step == Some(0) && n.deps.len() == 2)
            .expect("the COPY --from vertex has two inputs");
        assert_eq!(p.nodes[copy].deps.len(), 2);
        assert_eq!(p.target, 6);
        // The final stage's base is stage a's last vertex.
        let final_base = p
            .nodes
            .iter()
            .position(|n| n.op.step.is_none() && n.op.stage_id == 2)
            .unwrap();
        assert_eq!(p.nodes[final_base].deps, vec![1]);
    }

    #[test]
    fn identical_steps_on_identical_bases_share_a_digest() {
        let g = graph(
            "FROM busybox AS a\nRUN make\nFROM busybox AS b\nRUN make\nFROM scratch\nCOPY --from=a /o /a\nCOPY --from=b /o /b\n",
            None,
        );
        let p = plan(&g, &Named::new()).unwrap();
        assert_eq!(
            p.nodes[1].digest, p.nodes[3].digest,
            "the two RUN make run once"
        );
        assert_ne!(p.nodes[5].digest, p.nodes[6].digest);
    }

    #[test]
    fn a_url_or_repository_added_twice_is_one_source_vertex_after_the_steps() {
        let g = graph(
            "FROM scratch AS a\nADD http://h/f /f\nFROM scratch\nADD http://h/f /g\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 http://h/f /h\nADD https://x.org/r.git#v1:sub /src\nCOPY --from=a /f /a\n",
            None,
        );
        let p = plan(&g, &Named::new()).unwrap();
        // a: base + ADD; final: base + 3 ADD + COPY; then two URL sets
        // (with and without a checksum) and the repository.
        assert_eq!(p.nodes.len(), 10);
        assert_eq!((p.target, p.staged), (6, 7));
        let fetch = |i: usize| p.nodes[i].deps[1];
        assert_eq!(fetch(1), 7, "the first fetch follows every stage vertex");
        assert_eq!(
            fetch(3),
            7,
            "the same URL in another stage: the same vertex"
        );
        assert_eq!(fetch(4), 8, "a checksum makes another source");
        assert_eq!(fetch(5), 9);
        assert_eq!(
            p.nodes[7].op.op,
            VertexOp::Http {
                urls: vec!["http://h/f".into()],
                checksum: None
            }
        );
        assert!(matches!(
            &p.nodes[9].op.op,
            VertexOp::Git { repository, reference: Some(r), subdir: Some(s), .. }
                if repository == "https://x.org/r.git" && r == "v1" && s == "sub"
        ));
        assert!(p.nodes[7..].iter().all(|n| n.deps.is_empty()));
        // Its errors read as the first step adding it.
        assert_eq!(
            p.nodes[7].op.describe("D"),
            "D:2:1: [a 2/2] ADD http://h/f /f"
        );
        assert_eq!(p.nodes[1].op.name, "[a 2/2] ADD http://h/f /f");
    }

    #[test]
    fn an_image_copied_from_is_one_source_vertex() {
        let g = graph(
            "FROM scratch AS a\nCOPY --from=busybox /bin/sh /sh\nFROM scratch\nCOPY --from=busybox /bin/ls /ls\nCOPY --from=a /sh /sh\n",
            None,
        );
        let p = plan(&g, &Named::new()).unwrap();
        assert_eq!(p.nodes.len(), 6);
        assert_eq!(p.nodes[1].deps, vec![0, 5]);
        assert_eq!(p.nodes[3].deps, vec![2, 5]);
        assert_eq!(p.nodes[4].deps, vec![3, 1], "a stage is read as itself");
        assert_eq!(
            p.nodes[5].op.op,
            VertexOp::CopyImage {
                reference: "busybox".into()
            }
        );
    }

    #[test]
    fn a_named_context_standing_for_an_image_is_an_image_source() {
        let parsed = frontend::parse(
            "Dockerfile",
            "FROM scratch\nCOPY --from=tools /t /t\nCOPY --from=dir /d /d\n",
        )
        .expect("parses");
        let opts = frontend::BuildOptions {
            named_contexts: ["tools".to_string(), "dir".to_string()].into(),
            ..Default::default()
        };
        let g = frontend::lower(&parsed, &opts, &frontend::EmptyResolver).expect("lowers");
        let named = Named::from([
            ("tools".into(), NamedContextSource::Image("alpine:3".into())),
            ("dir".into(), NamedContextSource::Dir("/d".into())),
        ]);
        let p = plan(&g, &named).unwrap();
        assert_eq!(p.nodes.len(), 5);
        assert_eq!(p.nodes[1].deps, vec![0, 3]);
        assert_eq!(p.nodes[2].deps, vec![1, 4], "a directory is a local source");
        assert_eq!(
            p.nodes[3].op.op,
            VertexOp::CopyImage {
                reference: "tools".into()
            }
        );
        assert!(matches!(
            &p.nodes[4].op.op,
            VertexOp::Local { dir: Some(d), sources, .. }
                if d == std::path::Path::new("/d") && sources == &["/d".to_string()]
        ));
    }

    #[test]
    fn a_context_read_by_identical_copies_is_one_local_source() {
        let g = graph(
            "FROM scratch AS a\nCOPY f /f\nFROM scratch\nCOPY f /f\nCOPY f /g\nCOPY --exclude=*.o f /f\nCOPY g /f\nCOPY --from=a /f /h\n",
            None,
        );
        let p = plan(&g, &Named::new()).unwrap();
        // a: base + COPY; final: base + 5 steps; then four local sources.
        assert_eq!((p.nodes.len(), p.staged, p.target), (12, 8, 7));
        let source = |i: usize| p.nodes[i].deps[1];
        assert_eq!(source(1), 8, "the first source follows every stage vertex");
        assert_eq!(
            source(3),
            8,
            "the same selection in another stage: one vertex"
        );
        assert_eq!(source(4), 9, "another destination: another selection");
        assert_eq!(source(5), 10, "excludes make another selection");
        assert_eq!(source(6), 11, "other sources: another vertex");
        assert_eq!(source(7), 1, "a stage is read as itself");
        assert_eq!(
            p.nodes[8].op.op,
            VertexOp::Local {
                dir: None,
                sources: vec!["f".into()],
                dest: "/f".into(),
                excludes: vec![],
                parents: false,
            }
        );
        assert!(p.nodes[8..].iter().all(|n| n.deps.is_empty()));
        assert_eq!(p.nodes[8].op.describe("D"), "D:2:1: [a 2/2] COPY f /f");
        // Steps reading different sources differ even on the same base.
        assert_ne!(p.nodes[3].digest, p.nodes[4].digest);
    }

    #[test]
    fn a_workdir_or_heredoc_only_copy_reads_no_local_source() {
        let g = graph("FROM scratch\nWORKDIR /w\nCOPY <<EOF /x\nhi\nEOF\n", None);
        let p = plan(&g, &Named::new()).unwrap();
        assert_eq!(p.nodes.len(), 3);
        assert!(p.nodes.iter().all(|n| n.deps.len() <= 1));
    }

    #[test]
    fn progress_names_follow_buildkit() {
        let g = graph("FROM busybox\nRUN echo hi\n", None);
        let p = plan(&g, &Named::new()).unwrap();
        assert_eq!(p.nodes[1].op.name, "[2/2] RUN echo hi");
        assert_eq!(
            p.nodes[1].op.describe("Dockerfile"),
            "Dockerfile:2:1: [2/2] RUN echo hi"
        );
    }
}
