//! Physical lines, and BuildKit's per-line clean-up rules.

/// Physical lines of the text, each with its line ending, and the byte
/// offset where it starts. Only `\n` ends a line, as in BuildKit.
pub struct PhysicalLines<'a> {
    text: &'a str,
    pos: usize,
    /// How many lines have been handed out (the 1-based number of the last).
    pub number: usize,
}

impl<'a> PhysicalLines<'a> {
    pub fn new(text: &'a str) -> Self {
        PhysicalLines {
            text,
            pos: 0,
            number: 0,
        }
    }
}

impl<'a> Iterator for PhysicalLines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i + 1);
        self.pos = end;
        self.number += 1;
        Some((start, &self.text[start..end]))
    }
}

/// Go's `bytes.TrimRight(line, "\r\n")`.
pub fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// A comment line: the first non-blank character is `#`.
pub fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// A line with nothing but blanks.
pub fn is_blank(line: &str) -> bool {
    trim_newline(line).trim_start().is_empty()
}

/// BuildKit's continuation rule: the line ends in the escape token followed
/// only by spaces or tabs, and the character before the token is not itself
/// the token (a line that is only the token continues too). Returns the line
/// without the token and trailing blanks, and whether the instruction ends
/// here.
pub fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("RUN a \\", '\\'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a \\ \t ", '\\'), ("RUN a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(
            trim_continuation("ENV C a\\\\", '\\'),
            ("ENV C a\\\\", true)
        );
        assert_eq!(trim_continuation("RUN a `", '`'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a \\", '`'), ("RUN a \\", true));
    }

    #[test]
    fn physical_lines_keep_endings() {
        let lines: Vec<_> = PhysicalLines::new("a\r\nb\n\nc").collect();
        assert_eq!(lines, vec![(0, "a\r\n"), (3, "b\n"), (5, "\n"), (6, "c")]);
    }
}
