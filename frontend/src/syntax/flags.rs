//! Extracting `--flag` words from the start of an instruction's arguments.
//!
//! This is BuildKit's `extractBuilderFlags`: words at the start that begin
//! with `--` are flags; quotes are removed and `\` escapes the next character
//! while a flag word is read (always a backslash, whatever the escape
//! directive says); a bare `--` ends the flags and is dropped. Which flags an
//! instruction accepts is checked later, in [`super::validate`].

use super::split::{Piece, is_go_ascii_space};

/// The flags found and the byte offset where the remaining arguments start.
pub struct Extracted {
    pub flags: Vec<Piece>,
    pub rest_start: usize,
}

/// Reads flag words from the start of `line` (the text after the keyword).
pub fn extract_flags(line: &str) -> Extracted {
    let bytes = line.as_bytes();
    let mut flags = Vec::new();
    let mut pos = 0;
    loop {
        // Looking for the start of a word.
        while pos < bytes.len() && is_go_ascii_space(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            return Extracted {
                flags,
                rest_start: bytes.len(),
            };
        }
        if !(bytes[pos] == b'-' && bytes.get(pos + 1) == Some(&b'-')) {
            return Extracted {
                flags,
                rest_start: pos,
            };
        }
        let start = pos;
        let (word, end) = read_flag_word(bytes, pos);
        pos = end;
        if word == b"--" {
            return Extracted {
                flags,
                rest_start: pos,
            };
        }
        flags.push(Piece {
            start,
            end,
            value: String::from_utf8_lossy(&word).into_owned(),
        });
    }
}

/// Reads one flag word starting at `pos`; returns its processed bytes and
/// the offset just after it.
fn read_flag_word(bytes: &[u8], mut pos: usize) -> (Vec<u8>, usize) {
    let mut word = Vec::new();
    let mut quote: Option<u8> = None;
    while pos < bytes.len() {
        let ch = bytes[pos];
        match quote {
            None => {
                if is_go_ascii_space(ch) {
                    break;
                }
                if ch == b'\'' || ch == b'"' {
                    quote = Some(ch);
                    pos += 1;
                    continue;
                }
                if ch == b'\\' {
                    if pos + 1 == bytes.len() {
                        pos += 1;
                        continue; // a backslash at the end is skipped
                    }
                    pos += 1;
                }
                word.push(bytes[pos]);
                pos += 1;
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                    pos += 1;
                    continue;
                }
                if ch == b'\\' {
                    if pos + 1 == bytes.len() {
                        quote = None;
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                }
                word.push(bytes[pos]);
                pos += 1;
            }
        }
    }
    (word, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> (Vec<String>, &str) {
        let e = extract_flags(line);
        (
            e.flags.into_iter().map(|p| p.value).collect(),
            &line[e.rest_start..],
        )
    }

    #[test]
    fn flags_are_processed_and_end_at_first_plain_word() {
        assert_eq!(
            run(r#"--from=a --chown="me:you" \--x src dst"#),
            (
                vec!["--from=a".into(), "--chown=me:you".into()],
                r"\--x src dst"
            )
        );
        assert_eq!(run("--link"), (vec!["--link".into()], ""));
        assert_eq!(
            run("--doit=true -- --foo /tmp/"),
            (vec!["--doit=true".into()], " --foo /tmp/")
        );
        assert_eq!(run("-x --y"), (vec![], "-x --y"));
        assert_eq!(run(r"--a=b\ c d"), (vec!["--a=b c".into()], "d"));
        assert_eq!(run("--é=ü x"), (vec!["--é=ü".into()], "x"));
    }
}
