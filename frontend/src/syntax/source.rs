//! Mapping byte offsets back to lines and columns.
//!
//! The parser works on *logical* lines (continuations joined), but every node
//! must point at the *physical* text. [`Source`] turns byte offsets of the
//! original text into [`Span`]s, and [`Logical`] remembers which slice of the
//! original each piece of a joined line came from.

use std::cell::Cell;

use crate::ast::Span;

/// The original text with an index of where each physical line starts.
pub struct Source<'a> {
    pub text: &'a str,
    line_starts: Vec<usize>,
    /// Whether each line is pure ASCII, so its columns are byte offsets and
    /// need no counting (keeps spans linear on very long lines).
    line_ascii: Vec<bool>,
    /// The last `(byte, column)` computed on a non-ASCII line: spans are
    /// asked for mostly left to right, so counting resumes from there.
    last: Cell<(usize, usize)>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let line_ascii = line_starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = line_starts.get(i + 1).copied().unwrap_or(text.len());
                text.as_bytes()[start..end].is_ascii()
            })
            .collect();
        Source {
            text,
            line_starts,
            line_ascii,
            last: Cell::new((usize::MAX, 0)),
        }
    }

    /// 1-based line and character column of byte `at` (clamped to the text).
    pub fn position(&self, at: usize) -> (usize, usize) {
        let at = floor_boundary(self.text, at.min(self.text.len()));
        let idx = self.line_starts.partition_point(|&s| s <= at).max(1) - 1;
        let start = self.line_starts[idx];
        let column = if self.line_ascii.get(idx).copied().unwrap_or(false) {
            at - start + 1
        } else {
            let (last_at, last_col) = self.last.get();
            let column = if last_at >= start && last_at <= at && last_at != usize::MAX {
                last_col + self.text[last_at..at].chars().count()
            } else {
                self.text[start..at].chars().count() + 1
            };
            self.last.set((at, column));
            column
        };
        (idx + 1, column)
    }

    /// The span of bytes `start..end` of the original text.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let end = end.max(start);
        let (line, column) = self.position(start);
        let (end_line, end_column) = if end > start {
            // The last character of the range, inclusive.
            let last = floor_boundary(self.text, end.min(self.text.len()).saturating_sub(1));
            self.position(last.max(start))
        } else {
            (line, column)
        };
        Span {
            line,
            column,
            end_line,
            end_column,
            byte_start: start,
            byte_end: end,
        }
    }
}

/// The largest char boundary `<= at`.
fn floor_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A logical line: pieces of physical lines glued together, with a map from
/// offsets in the glued text back to offsets in the original.
#[derive(Debug, Default, Clone)]
pub struct Logical {
    pub text: String,
    /// `(offset in text, offset in original)` where each piece starts,
    /// increasing in both.
    pieces: Vec<(usize, usize)>,
}

impl Logical {
    /// Appends `piece`, which is found at byte `origin` of the original text.
    pub fn push(&mut self, piece: &str, origin: usize) {
        if piece.is_empty() {
            return;
        }
        self.pieces.push((self.text.len(), origin));
        self.text.push_str(piece);
    }

    /// The original offset of logical offset `at`.
    pub fn origin(&self, at: usize) -> usize {
        let idx = self.pieces.partition_point(|&(l, _)| l <= at);
        match idx.checked_sub(1).and_then(|i| self.pieces.get(i)) {
            Some(&(l, o)) => o + (at - l),
            None => self.pieces.first().map_or(at, |&(_, o)| o),
        }
    }

    /// The original byte range of logical range `start..end`: the end maps
    /// through the last character of the range, so a range that ends at a
    /// piece boundary does not stretch over the text that was cut out.
    pub fn origin_range(&self, start: usize, end: usize) -> (usize, usize) {
        let a = self.origin(start);
        if end <= start {
            return (a, a);
        }
        let last = end - 1;
        let last_len = self.text[floor_boundary(&self.text, last)..]
            .chars()
            .next()
            .map_or(1, char::len_utf8);
        let b = self.origin(floor_boundary(&self.text, last)) + last_len;
        (a, b.max(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let s = Source::new("ab\n☃x\n");
        assert_eq!(s.position(0), (1, 1));
        assert_eq!(s.position(3), (2, 1));
        assert_eq!(s.position(6), (2, 2));
        let sp = s.span(3, 7);
        assert_eq!(
            (sp.line, sp.column, sp.end_line, sp.end_column),
            (2, 1, 2, 2)
        );
    }

    #[test]
    fn logical_offsets_map_back_across_pieces() {
        let mut l = Logical::default();
        l.push("RUN a ", 0); // "RUN a \\\n"
        l.push("  b", 9);
        assert_eq!(l.text, "RUN a   b");
        assert_eq!(l.origin(4), 4);
        assert_eq!(l.origin(6), 9);
        assert_eq!(l.origin_range(4, 9), (4, 12));
        assert_eq!(l.origin_range(0, 6), (0, 6));
    }
}
