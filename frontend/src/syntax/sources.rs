//! COPY/ADD arguments split into ordinary sources, inline (heredoc) sources
//! and the destination, as BuildKit's instruction layer does it.

use serde::Serialize;

use crate::ast::{Args, Instruction, Span, Word};

use super::heredoc::{chomp, parse_heredoc_word};

/// A file whose content is written in the Dockerfile (`COPY <<EOF /dst`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineSource {
    /// The heredoc name, which becomes the file name.
    pub path: String,
    /// The body, with leading tabs already removed for `<<-`.
    pub data: String,
    /// Whether variables in `data` are to be expanded (unquoted delimiter).
    pub expand: bool,
    /// The `<<EOF` word.
    pub span: Span,
}

/// The sources and destination of a COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcesAndDest {
    /// Paths (or URLs) to copy from, raw.
    pub paths: Vec<Word>,
    /// Heredoc sources, in order.
    pub contents: Vec<InlineSource>,
    /// The last argument.
    pub dest: Word,
}

/// Splits a COPY/ADD's arguments. `None` when there are fewer than two
/// arguments or the instruction is not a list (validation reports that).
pub fn sources_and_dest(inst: &Instruction) -> Option<SourcesAndDest> {
    let Args::List { json, items } = &inst.args else {
        return None;
    };
    let (dest, sources) = items.split_last()?;
    if sources.is_empty() {
        return None;
    }
    let mut paths = Vec::new();
    let mut contents = Vec::new();
    for src in sources {
        let marker = if *json {
            None
        } else {
            parse_heredoc_word(&src.value).ok().flatten()
        };
        let body = marker
            .as_ref()
            .and_then(|m| inst.heredocs.iter().find(|h| h.name == m.name));
        match (marker, body) {
            (Some(m), Some(h)) => contents.push(InlineSource {
                path: m.name,
                data: if m.chomp {
                    chomp(&h.content)
                } else {
                    h.content.clone()
                },
                expand: m.expand,
                span: src.span,
            }),
            _ => paths.push(src.clone()),
        }
    }
    Some(SourcesAndDest {
        paths,
        contents,
        dest: dest.clone(),
    })
}
