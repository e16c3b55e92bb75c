//! One logical line to one [`Instruction`]: keyword, flags, and arguments
//! split the way BuildKit splits them for each kind of instruction.

use crate::ast::{ArgDecl, Args, Command, Flag, Instruction, KeyValue, Keyword, Span, Word};
use crate::diagnostic::Diagnostic;

use super::flags::extract_flags;
use super::source::{Logical, Source};
use super::split::{
    JsonError, Piece, is_go_ascii_space, parse_json_array, parse_words, split_re_whitespace,
    split_re_whitespace_once,
};

/// What the instruction parser needs to know about its surroundings.
pub struct Ctx<'a> {
    pub file: &'a str,
    pub source: &'a Source<'a>,
    pub line: &'a Logical,
    pub escape: char,
}

impl Ctx<'_> {
    /// The span of logical range `start..end`.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let (a, b) = self.line.origin_range(start, end);
        self.source.span(a, b)
    }

    fn word(&self, base: usize, p: Piece) -> Word {
        Word {
            span: self.span(base + p.start, base + p.end),
            value: p.value,
        }
    }

    fn error(&self, at: usize, message: String, hint: &str) -> Diagnostic {
        Diagnostic::at(self.file, self.span(at, at + 1), message).with_hint(hint)
    }
}

/// How deeply `ONBUILD ONBUILD ...` may nest before the parser gives up
/// (BuildKit has no limit, but only one level is valid anyway, and a limit
/// keeps a hostile line from exhausting the stack).
const MAX_ONBUILD_DEPTH: usize = 16;

/// Parses the instruction in `ctx.line.text[start..end]`. Heredoc bodies
/// are attached by the caller.
pub fn parse_instruction(ctx: &Ctx, start: usize, end: usize) -> Result<Instruction, Diagnostic> {
    parse_nested(ctx, start, end, 0)
}

fn parse_nested(
    ctx: &Ctx,
    start: usize,
    end: usize,
    depth: usize,
) -> Result<Instruction, Diagnostic> {
    let whole = &ctx.line.text[start..end];
    // Trim like Go's strings.TrimSpace, keeping track of offsets.
    let lead = whole.len() - whole.trim_start().len();
    let trimmed = whole.trim();
    let base = start + lead;
    let (kw, after) = split_re_whitespace_once(trimmed);
    let keyword = kw.value;
    let kind = Keyword::from_word(&keyword);
    let keyword_span = ctx.span(base, base + keyword.len());

    let mut flags = Vec::new();
    let (args_start, args_text) = match after {
        None => (base + trimmed.len(), ""),
        Some(rest) => {
            let rest_text = &trimmed[rest.start..];
            let extracted = extract_flags(rest_text);
            for f in extracted.flags {
                flags.push(flag(ctx, base + rest.start, f));
            }
            let remaining = &rest_text[extracted.rest_start..];
            let lead = remaining.len() - remaining.trim_start().len();
            (
                base + rest.start + extracted.rest_start + lead,
                remaining.trim(),
            )
        }
    };
    let args_word = Word {
        value: args_text.to_string(),
        span: ctx.span(args_start, args_start + args_text.len()),
    };
    let args = parse_args(ctx, kind, args_start, args_text, depth)?;
    Ok(Instruction {
        name: crate::ast::go_to_lower(&keyword),
        keyword,
        kind,
        keyword_span,
        flags,
        args_text: args_word,
        args,
        heredocs: Vec::new(),
        original: whole.to_string(),
        span: ctx.span(base, base + trimmed.len()),
        comments: Vec::new(),
    })
}

fn flag(ctx: &Ctx, base: usize, p: Piece) -> Flag {
    Flag::from_word(&p.value, ctx.span(base + p.start, base + p.end))
}

/// Dispatches on the keyword, as BuildKit's parser dispatch table does.
fn parse_args(
    ctx: &Ctx,
    kind: Keyword,
    at: usize,
    text: &str,
    depth: usize,
) -> Result<Args, Diagnostic> {
    if kind == Keyword::Unknown {
        return Ok(Args::Unknown);
    }
    if text.is_empty() {
        return Ok(Args::Empty);
    }
    let word = |p: Piece| ctx.word(at, p);
    let whole = || Word {
        value: text.to_string(),
        span: ctx.span(at, at + text.len()),
    };
    Ok(match kind {
        Keyword::Run | Keyword::Cmd | Keyword::Entrypoint | Keyword::Shell => Args::Command {
            command: command(ctx, at, text)?,
        },
        Keyword::Add | Keyword::Copy | Keyword::Volume => match parse_json_array(text) {
            Ok(items) => Args::List {
                json: true,
                items: items.into_iter().map(word).collect(),
            },
            Err(JsonError::NotStrings) => return Err(not_strings(ctx, at)),
            Err(JsonError::NotJson) => Args::List {
                json: false,
                items: split_re_whitespace(text).into_iter().map(word).collect(),
            },
        },
        Keyword::From | Keyword::Expose => Args::Words {
            words: split_re_whitespace(text).into_iter().map(word).collect(),
        },
        Keyword::User | Keyword::Workdir | Keyword::Maintainer | Keyword::Stopsignal => {
            Args::Text { text: whole() }
        }
        Keyword::Arg => Args::ArgDecls {
            decls: parse_words(text, ctx.escape)
                .into_iter()
                .map(|p| {
                    let (name, default) = match p.value.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (p.value.clone(), None),
                    };
                    ArgDecl {
                        word: word(p),
                        name,
                        default,
                    }
                })
                .collect(),
        },
        Keyword::Env | Keyword::Label => key_values(ctx, kind, at, text)?,
        Keyword::Healthcheck => healthcheck(ctx, at, text)?,
        Keyword::Onbuild => {
            if depth >= MAX_ONBUILD_DEPTH {
                return Err(ctx.error(
                    at,
                    "ONBUILD is nested too deeply".to_string(),
                    "an ONBUILD trigger cannot itself be an ONBUILD",
                ));
            }
            let trigger = parse_nested(ctx, at, at + text.len(), depth + 1)?;
            Args::Onbuild {
                trigger: Box::new(trigger),
            }
        }
        Keyword::Unknown => Args::Unknown,
    })
}

fn not_strings(ctx: &Ctx, at: usize) -> Diagnostic {
    ctx.error(
        at,
        "when using JSON array syntax, arrays must be comprised of strings only".to_string(),
        "quote every element, e.g. [\"sleep\", \"10\"], or write the command in shell form",
    )
}

/// BuildKit's `parseMaybeJSON`: exec form for a JSON array of strings, the
/// whole text verbatim otherwise (invalid JSON included).
fn command(ctx: &Ctx, at: usize, text: &str) -> Result<Command, Diagnostic> {
    match parse_json_array(text) {
        Ok(items) => Ok(Command::Exec(
            items.into_iter().map(|p| ctx.word(at, p)).collect(),
        )),
        Err(JsonError::NotStrings) => Err(not_strings(ctx, at)),
        Err(JsonError::NotJson) => Ok(Command::Shell(Word {
            value: text.to_string(),
            span: ctx.span(at, at + text.len()),
        })),
    }
}

/// HEALTHCHECK: the first blank-delimited word, then a command if any.
fn healthcheck(ctx: &Ctx, at: usize, text: &str) -> Result<Args, Diagnostic> {
    let bytes = text.as_bytes();
    let sep = bytes
        .iter()
        .position(|&b| is_go_ascii_space(b))
        .unwrap_or(bytes.len());
    let next = bytes[sep..]
        .iter()
        .position(|&b| !is_go_ascii_space(b))
        .map_or(bytes.len(), |i| sep + i);
    let kind = Word {
        value: text[..sep].to_string(),
        span: ctx.span(at, at + sep),
    };
    let rest = &text[next..];
    let command = if rest.is_empty() {
        None
    } else {
        Some(command(ctx, at + next, rest)?)
    };
    Ok(Args::Healthcheck { kind, command })
}

/// ENV and LABEL: the legacy `KEY value` form or `key=value ...` pairs.
fn key_values(ctx: &Ctx, kind: Keyword, at: usize, text: &str) -> Result<Args, Diagnostic> {
    let words = parse_words(text, ctx.escape);
    let Some(first) = words.first() else {
        return Ok(Args::Empty);
    };
    let upper = kind.as_upper();
    if !first.value.contains('=') {
        let (key, value) = split_re_whitespace_once(text);
        let Some(value) = value else {
            return Err(ctx.error(
                at,
                format!("{upper} must have two arguments"),
                &format!("write `{upper} name=value` (or the legacy `{upper} name value`)"),
            ));
        };
        let span = ctx.span(at, at + text.len());
        return Ok(Args::KeyValues {
            pairs: vec![KeyValue {
                key: ctx.word(at, key),
                value: ctx.word(at, value),
                equals: false,
                span,
            }],
        });
    }
    let mut pairs = Vec::with_capacity(words.len());
    for w in words {
        let Some(eq) = w.value.find('=') else {
            return Err(ctx.error(
                at + w.start,
                format!(
                    "Syntax error - can't find = in {}. Must be of the form: name=value",
                    crate::dump::go_quote(&w.value)
                ),
                "every word must be name=value; quote values that contain blanks",
            ));
        };
        // The value text is the word's text after the first `=`; the word
        // is verbatim, so offsets inside it are offsets in the text.
        let key = Piece {
            start: w.start,
            end: w.start + eq,
            value: w.value[..eq].to_string(),
        };
        let value = Piece {
            start: w.start + eq + 1,
            end: w.end,
            value: w.value[eq + 1..].to_string(),
        };
        pairs.push(KeyValue {
            span: ctx.span(at + w.start, at + w.end),
            key: ctx.word(at, key),
            value: ctx.word(at, value),
            equals: true,
        });
    }
    Ok(Args::KeyValues { pairs })
}
