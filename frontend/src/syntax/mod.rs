//! The Dockerfile parser: text in, [`crate::ast::Dockerfile`] out.
//!
//! It follows BuildKit's parser rule for rule (directives, line joining,
//! flags, per-instruction argument splitting, heredocs), so that a file means
//! the same thing to strata as to `docker build`. The instruction layer that
//! checks argument counts and allowed flags is [`validate`].

pub mod directives;
pub mod flags;
pub mod flagspec;
pub mod heredoc;
pub mod instruction;
pub mod lines;
pub mod shellwords;
pub mod source;
pub mod sources;
pub mod split;
pub mod validate;

use crate::ast::{Args, Command, Directive, Dockerfile, Heredoc, Instruction, Keyword, Span};
use crate::diagnostic::Diagnostic;

use directives::{DirectiveParser, LineKind};
use instruction::{Ctx, parse_instruction};
use lines::{PhysicalLines, is_blank, is_comment, trim_continuation, trim_newline};
use source::{Logical, Source};

pub use validate::{validate, validate_instruction};

/// Parses `text`. `file_name` is only used in diagnostics and the tree.
///
/// Never panics, whatever the input.
pub fn parse(file_name: &str, text: &str) -> Result<Dockerfile, Diagnostic> {
    let source = Source::new(text);
    let mut lines = PhysicalLines::new(text);
    let mut directive_parser = DirectiveParser::default();
    let mut directives = Vec::new();
    let mut escape = '\\';
    let mut comments: Vec<String> = Vec::new();
    let mut instructions: Vec<Instruction> = Vec::new();
    let mut warnings = Vec::new();

    while let Some((mut start, mut raw)) = lines.next() {
        if lines.number == 1
            && let Some(rest) = raw.strip_prefix('\u{feff}')
        {
            start += '\u{feff}'.len_utf8();
            raw = rest;
        }
        if is_comment(raw) {
            // BuildKit drops the first byte of the line, whatever it is.
            let text = String::from_utf8_lossy(raw.as_bytes().get(1..).unwrap_or_default());
            let text = text.trim();
            if text.is_empty() {
                comments.clear();
            } else {
                comments.push(text.to_string());
            }
        }
        let no_newline = trim_newline(raw);
        let lead = no_newline.len() - no_newline.trim_start().len();
        let token = &no_newline[lead..];
        let line_span = source.span(start + lead, start + no_newline.len());
        match directive_parser.line(token) {
            Ok(LineKind::Directive(name, value)) => {
                // A directive is not a comment documenting what follows
                // (BuildKit strips it from the comment block).
                comments.pop();
                if name == "escape" {
                    escape = directives::escape_char(&value).unwrap_or('\\');
                }
                directives.push(Directive {
                    name,
                    value,
                    span: line_span,
                });
            }
            Ok(LineKind::Other) => {}
            Err(e) => return Err(Diagnostic::at(file_name, line_span, e.message).with_hint(e.hint)),
        }
        let processed = if is_comment(token) { "" } else { token };
        let (piece, mut ended) = trim_continuation(processed, escape);
        if ended && piece.is_empty() {
            continue;
        }
        let begin = start + lead;
        let mut end = start + no_newline.len();
        let mut logical = Logical::default();
        logical.push(piece, begin);
        let mut empty_continuation = false;
        while !ended {
            let Some((s, l)) = lines.next() else { break };
            let l = trim_newline(l);
            end = s + l.len();
            if is_comment(l) {
                continue;
            }
            if is_blank(l) {
                empty_continuation = true;
                continue;
            }
            let (piece, e) = trim_continuation(l, escape);
            ended = e;
            logical.push(piece, s);
        }
        if empty_continuation {
            warnings.push(
                Diagnostic::at(
                    file_name,
                    source.span(begin, end),
                    format!("Empty continuation line found in: {}", logical.text),
                )
                .with_hint(
                    "remove the empty line inside the continuation: empty continuation lines will become errors in a future release",
                )
                .warning(),
            );
        }

        let ctx = Ctx {
            file: file_name,
            source: &source,
            line: &logical,
            escape,
        };
        let mut inst = parse_instruction(&ctx, 0, logical.text.len())?;
        if can_contain_heredoc(&inst) && logical.text.contains("<<") {
            let markers = heredoc::heredocs_from_line(&logical.text).map_err(|m| {
                Diagnostic::at(file_name, inst.span, m)
                    .with_hint("balance the quotes around the heredoc word, e.g. <<'EOF'")
            })?;
            for (word, marker) in markers {
                let word_span = ctx.span(word.start, word.end);
                let mut content = String::new();
                let mut body_start = None;
                let mut terminated = false;
                for (s, l) in lines.by_ref() {
                    body_start.get_or_insert(s);
                    let bare = trim_newline(l);
                    end = s + bare.len();
                    let candidate = if marker.chomp {
                        bare.trim_start_matches('\t')
                    } else {
                        bare
                    };
                    if candidate == marker.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(l);
                }
                if !terminated {
                    return Err(Diagnostic::at(file_name, word_span, "unterminated heredoc")
                        .with_hint(format!(
                            "end the heredoc with a line that contains only `{}`",
                            marker.name
                        )));
                }
                inst.heredocs.push(Heredoc {
                    name: marker.name,
                    file_descriptor: marker.file_descriptor,
                    expand: marker.expand,
                    chomp: marker.chomp,
                    content,
                    span: word_span,
                    body_span: source.span(body_start.unwrap_or(end), end),
                });
            }
            if let Args::Onbuild { trigger } = &mut inst.args {
                trigger.heredocs = inst.heredocs.clone();
            }
        }
        inst.span = source.span(begin, end);
        inst.comments = std::mem::take(&mut comments);
        instructions.push(inst);
    }

    let (Some(first), Some(last)) = (instructions.first(), instructions.last()) else {
        return Err(Diagnostic::error(
            file_name,
            lines.number.max(1),
            1,
            "the Dockerfile is empty: add a FROM line",
        )
        .with_hint(
            "a Dockerfile needs at least one instruction, usually `FROM <image>`; comments and blank lines do not count",
        ));
    };
    let span = Span {
        line: first.span.line,
        column: first.span.column,
        end_line: last.span.end_line,
        end_column: last.span.end_column,
        byte_start: first.span.byte_start,
        byte_end: last.span.byte_end,
    };
    Ok(Dockerfile {
        file_name: file_name.to_string(),
        directives,
        escape,
        instructions,
        span,
        warnings,
    })
}

/// Heredocs are read only for RUN, COPY and ADD (directly or as an ONBUILD
/// trigger), and never for their JSON forms.
fn can_contain_heredoc(inst: &Instruction) -> bool {
    let target = match &inst.args {
        Args::Onbuild { trigger } => trigger.as_ref(),
        _ => inst,
    };
    if !matches!(target.kind, Keyword::Run | Keyword::Copy | Keyword::Add) {
        return false;
    }
    !matches!(
        target.args,
        Args::Command {
            command: Command::Exec(_)
        } | Args::List { json: true, .. }
    )
}
