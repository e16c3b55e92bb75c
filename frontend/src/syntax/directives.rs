//! Parser directives (`# syntax=`, `# escape=`, `# check=`).
//!
//! BuildKit's rules, which this follows exactly: directives are recognised
//! only on the lines at the very top of the file; the first line that is not a
//! directive (an instruction, a blank line, an ordinary comment, or a comment
//! that looks like `# key=value` with an unknown key) ends them for good.
//! Keys are case-insensitive, a key may appear only once, and the escape
//! character must be `\` or `` ` ``.

use nom::{
    IResult, Parser,
    bytes::complete::take_while,
    character::complete::{char, satisfy},
    combinator::{recognize, rest},
    sequence::pair,
};

/// The directive keys BuildKit knows.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// Go's regexp `\s`: ASCII tab, newline, form feed, carriage return, space.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `#` `\s*` key `\s*` `=` and the raw text after it.
fn directive_line(input: &str) -> IResult<&str, (&str, &str)> {
    let key = recognize(pair(
        satisfy(|c: char| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ));
    let (input, (_, _, key, _, _, value)) = (
        char('#'),
        take_while(is_re_space),
        key,
        take_while(is_re_space),
        char('='),
        rest,
    )
        .parse(input)?;
    Ok((input, (key, value)))
}

/// The value part of `key = value`: blanks around it removed, but (like the
/// lazy `(.+?)\s*$` BuildKit uses) never empty; an all-blank value keeps its
/// last blank.
fn directive_value(raw: &str) -> Option<&str> {
    let trimmed = raw.trim_matches(is_re_space);
    if !trimmed.is_empty() {
        return Some(trimmed);
    }
    let last = raw.chars().last()?;
    Some(&raw[raw.len() - last.len_utf8()..])
}

/// Recognises directives line by line, remembering when they have ended.
#[derive(Debug, Default)]
pub struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

/// What one line meant to the directive parser.
#[derive(Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A directive: lower-case key and value.
    Directive(String, String),
    /// Not a directive (and directives are over, if they were not already).
    Other,
}

/// A directive that is recognised but wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct DirectiveError {
    pub message: String,
    pub hint: String,
}

impl DirectiveParser {
    /// Looks at one line (leading whitespace and the line ending removed).
    pub fn line(&mut self, line: &str) -> Result<LineKind, DirectiveError> {
        if self.done {
            return Ok(LineKind::Other);
        }
        let Ok((_, (key, raw))) = directive_line(line) else {
            self.done = true;
            return Ok(LineKind::Other);
        };
        let Some(value) = directive_value(raw) else {
            self.done = true;
            return Ok(LineKind::Other);
        };
        let key = key.to_ascii_lowercase();
        if !KNOWN.contains(&key.as_str()) {
            self.done = true;
            return Ok(LineKind::Other);
        }
        if self.seen.contains(&key) {
            return Err(DirectiveError {
                message: format!("only one {key} parser directive can be used"),
                hint: format!("remove the repeated `# {key}=` line"),
            });
        }
        self.seen.push(key.clone());
        if key == "escape" {
            escape_char(value)?;
        }
        Ok(LineKind::Directive(key, value.to_string()))
    }
}

/// Checks an `escape` directive's value.
pub fn escape_char(value: &str) -> Result<char, DirectiveError> {
    match value {
        "\\" => Ok('\\'),
        "`" => Ok('`'),
        _ => Err(DirectiveError {
            message: format!("invalid escape token '{value}' does not match ` or \\"),
            hint: "use `# escape=\\` (the default) or `# escape=``".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(k: &str, v: &str) -> LineKind {
        LineKind::Directive(k.to_string(), v.to_string())
    }

    #[test]
    fn recognises_keys_case_insensitively_with_blanks() {
        let mut p = DirectiveParser::default();
        assert_eq!(
            p.line("# SYNTAX = docker/dockerfile:1  "),
            Ok(d("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(p.line("#escape=`"), Ok(d("escape", "`")));
        assert_eq!(p.line("# check=skip=all"), Ok(d("check", "skip=all")));
        assert_eq!(
            p.line("# syntax=again"),
            Err(DirectiveError {
                message: "only one syntax parser directive can be used".into(),
                hint: "remove the repeated `# syntax=` line".into(),
            })
        );
    }

    #[test]
    fn first_non_directive_line_ends_directives() {
        for ender in ["", "# just a comment", "# foo=bar", "FROM x", "#=x"] {
            let mut p = DirectiveParser::default();
            assert_eq!(p.line(ender), Ok(LineKind::Other), "{ender:?}");
            assert_eq!(p.line("# escape=`"), Ok(LineKind::Other), "after {ender:?}");
        }
    }

    #[test]
    fn bad_escape_is_an_error() {
        let mut p = DirectiveParser::default();
        let err = p.line("# escape=x").unwrap_err();
        assert_eq!(
            err.message,
            "invalid escape token 'x' does not match ` or \\"
        );
        assert!(DirectiveParser::default().line("# escape= ").is_err());
    }
}
