//! BuildKit's AST dump format (`strata parse --dump`).
//!
//! One line per instruction: `(keyword ["--flag" ...] "arg" ...)`, strings
//! quoted like Go's `strconv.Quote`. The exact rules are in
//! `shared/corpus/buildkit-parser/PROVENANCE.md`; the conformance test
//! compares against BuildKit's own expected output byte for byte.

use crate::ast::{Args, Command, Dockerfile, Instruction, Word};

/// The dump of a whole file: one line per instruction, each ending in `\n`.
pub fn dump(file: &Dockerfile) -> String {
    let mut out = String::new();
    for inst in &file.instructions {
        out.push('(');
        out.push_str(&dump_instruction(inst));
        out.push_str(")\n");
    }
    out
}

/// The dump of one instruction, without the surrounding parentheses.
pub fn dump_instruction(inst: &Instruction) -> String {
    let mut out = inst.name.clone();
    if !inst.flags.is_empty() {
        out.push_str(" [");
        let flags: Vec<String> = inst.flags.iter().map(|f| go_quote(&f.text)).collect();
        out.push_str(&flags.join(" "));
        out.push(']');
    }
    for arg in dump_args(&inst.args) {
        out.push(' ');
        out.push_str(&arg);
    }
    // BuildKit trims the node's dump with strings.TrimSpace.
    out.trim().to_string()
}

/// The arguments as BuildKit's node chain holds them, already quoted.
fn dump_args(args: &Args) -> Vec<String> {
    let quote_all = |words: &[Word]| words.iter().map(|w| go_quote(&w.value)).collect();
    match args {
        Args::Empty => Vec::new(),
        Args::Unknown => vec![go_quote("")],
        Args::Command { command } => dump_command(command),
        Args::Healthcheck { kind, command } => {
            let mut out = vec![go_quote(&kind.value)];
            if let Some(c) = command {
                out.extend(dump_command(c));
            }
            out
        }
        Args::List { items, .. } => quote_all(items),
        Args::Words { words } => quote_all(words),
        Args::Text { text } => vec![go_quote(&text.value)],
        Args::KeyValues { pairs } => pairs
            .iter()
            .flat_map(|p| {
                [
                    go_quote(&p.key.value),
                    go_quote(&p.value.value),
                    go_quote(if p.equals { "=" } else { "" }),
                ]
            })
            .collect(),
        Args::ArgDecls { decls } => decls.iter().map(|d| go_quote(&d.word.value)).collect(),
        Args::Onbuild { trigger } => vec![format!("({})", dump_instruction(trigger))],
    }
}

fn dump_command(c: &Command) -> Vec<String> {
    match c {
        Command::Exec(words) => words.iter().map(|w| go_quote(&w.value)).collect(),
        Command::Shell(w) => vec![go_quote(&w.value)],
    }
}

/// Quotes `s` like Go's `strconv.Quote`: printable characters (non-ASCII
/// included) stay as they are; `"` and `\` are escaped; control characters
/// use `\a \b \f \n \r \t \v`, `\xHH`, `\uHHHH` or `\UHHHHHHHH`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `strconv.IsPrint` without Unicode tables:
/// controls, separators other than the ASCII space, format characters,
/// surrogates, private use and non-characters are not printable.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(
        u,
        0xad | 0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x890..=0x891
            | 0x8e2
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
    );
    let private = matches!(u, 0xe000..=0xf8ff | 0xf0000..=0x10ffff);
    let nonchar = (u & 0xfffe) == 0xfffe || (0xfdd0..=0xfdef).contains(&u);
    !(format || private || nonchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\x00\x07\t\x7f"), r#""\x00\a\t\x7f""#);
        assert_eq!(go_quote("♥ ☃"), "\"♥ ☃\"");
        assert_eq!(
            go_quote("\u{a0}\u{200b}\u{10ffff}"),
            r#""\u00a0\u200b\U0010ffff""#
        );
    }
}
