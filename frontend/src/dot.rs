//! Graphviz DOT rendering of a [`BuildGraph`], for `strata graph --format
//! dot`: one cluster per stage (its base, then its steps in order), a bold
//! edge for every `FROM <stage>` and a dashed edge for every `COPY --from` /
//! `RUN --mount=from=` that reads another stage or an image.

use std::fmt::Write as _;

use crate::graph::{Base, BuildGraph, CopySource, Op, Stage};

/// Longest label text before it is cut with `…`.
const MAX_LABEL: usize = 60;

/// Renders the graph as a DOT digraph.
pub fn render(graph: &BuildGraph) -> String {
    let mut out = String::new();
    out.push_str("digraph build {\n");
    out.push_str("  rankdir=TB;\n  compound=true;\n");
    out.push_str("  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    let mut edges = Vec::new();
    let mut images = Vec::new();
    for (pos, stage) in graph.stages.iter().enumerate() {
        render_stage(&mut out, stage, pos == graph.target);
        if let Base::Stage { id } = &stage.base
            && graph.stage(*id).is_some()
        {
            edges.push(format!(
                "  {} -> {} [style=bold, label=\"FROM\"];",
                last_node(graph, *id),
                base_node(stage.id)
            ));
        }
        for (i, step) in stage.steps.iter().enumerate() {
            let to = step_node(stage.id, i);
            let mut sources: Vec<CopySource> = Vec::new();
            match &step.op {
                Op::File(f) => sources.push(f.from.clone()),
                Op::Exec(e) => {
                    for m in &e.mounts {
                        if let Some(id) = m.from_stage {
                            sources.push(CopySource::Stage { id });
                        } else if let Some(r) = &m.from {
                            sources.push(CopySource::Image {
                                reference: r.clone(),
                            });
                        }
                    }
                }
            }
            for src in sources {
                match src {
                    CopySource::Stage { id } if graph.stage(id).is_some() => edges.push(format!(
                        "  {} -> {to} [style=dashed, label=\"--from\"];",
                        last_node(graph, id)
                    )),
                    CopySource::Image { reference } | CopySource::Named { name: reference } => {
                        let n = images.len();
                        images.push(format!(
                            "  image_{n} [shape=ellipse, label=\"{}\"];",
                            escape(&reference)
                        ));
                        edges.push(format!(
                            "  image_{n} -> {to} [style=dashed, label=\"--from\"];"
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    for line in images.iter().chain(edges.iter()) {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

fn render_stage(out: &mut String, stage: &Stage, is_target: bool) {
    let title = match &stage.name {
        Some(n) => format!("stage {} ({n})", stage.id),
        None => format!("stage {}", stage.id),
    };
    let _ = writeln!(out, "  subgraph cluster_{} {{", stage.id);
    let _ = writeln!(
        out,
        "    label=\"{}{}\";",
        escape(&title),
        if is_target { " [target]" } else { "" }
    );
    if is_target {
        out.push_str("    style=bold;\n    color=blue;\n");
    }
    let base_label = match &stage.base {
        Base::Scratch => "FROM scratch".to_string(),
        Base::Image {
            reference,
            platform,
            ..
        } => format!("FROM {reference} ({platform})"),
        Base::Stage { id } => format!("FROM stage {id}"),
    };
    let _ = writeln!(
        out,
        "    {} [shape=ellipse, label=\"{}\"];",
        base_node(stage.id),
        escape(&base_label)
    );
    let mut prev = base_node(stage.id);
    for (i, step) in stage.steps.iter().enumerate() {
        let node = step_node(stage.id, i);
        let _ = writeln!(
            out,
            "    {node} [label=\"{}\"];",
            escape(&shorten(&step.original))
        );
        let _ = writeln!(out, "    {prev} -> {node};");
        prev = node;
    }
    out.push_str("  }\n");
}

fn base_node(stage: usize) -> String {
    format!("s{stage}_base")
}

fn step_node(stage: usize, step: usize) -> String {
    format!("s{stage}_{step}")
}

/// The node holding a stage's final filesystem: its last step, or its base.
fn last_node(graph: &BuildGraph, id: usize) -> String {
    match graph.stage(id) {
        Some(s) if !s.steps.is_empty() => step_node(id, s.steps.len() - 1),
        _ => base_node(id),
    }
}

/// The first line of `s`, cut to [`MAX_LABEL`] characters.
fn shorten(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > MAX_LABEL || s.contains('\n') {
        let cut: String = first.chars().take(MAX_LABEL).collect();
        format!("{cut}…")
    } else {
        first.to_string()
    }
}

/// Escapes text for a double-quoted DOT string.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_shortens() {
        assert_eq!(escape("a \"b\" \\c"), "a \\\"b\\\" \\\\c");
        assert_eq!(shorten("RUN a\nb"), "RUN a…");
        assert_eq!(shorten(&"x".repeat(70)).chars().count(), MAX_LABEL + 1);
    }
}
