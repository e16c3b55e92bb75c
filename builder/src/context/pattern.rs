//! One `.dockerignore` / `COPY --exclude` pattern: Go's `filepath.Match`
//! language plus `**`, compiled once and matched against slash-separated
//! context paths.
//!
//! Hand-written rather than built on `globset`: Docker's semantics
//! (moby/patternmatcher) differ from globset's in the places users trip over —
//! `**` not followed by `/` still spans directories only at segment starts
//! (`**file` matches `dir/file` but not `xfile`), character classes follow Go
//! (`[^…]` negation, `\` escapes, `[-x]`/`[x-]`/`[]a]` are *errors*), and a
//! malformed pattern must fail where Docker fails. Matching is a memoised
//! backtracking walk over the tokens, so it is linear in
//! `tokens × path length` and cannot blow up on `*a*a*a…`.

use std::fmt;

/// A pattern that Docker would reject (`filepath.ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern {
    pub pattern: String,
    pub reason: &'static str,
}

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "syntax error in pattern {:?}: {}",
            self.pattern, self.reason
        )
    }
}

impl std::error::Error for BadPattern {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One literal character.
    Lit(char),
    /// `?`: one character other than `/`.
    Any,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` (with a following `/` eaten) before more pattern: zero or more
    /// whole leading segments, i.e. the regex `(.*/)?`.
    Segments,
    /// `**` at the end of the pattern: anything at all, `/` included.
    Rest,
    /// `[...]`: inclusive ranges, possibly negated; never matches `/`
    /// only because paths are matched segment-wise by the caller's rules
    /// (Go lets a class match `/`, and so do we).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
    /// The literal characters the pattern starts and ends with: a path
    /// without them cannot match, which rules out most paths of a context
    /// without running the matcher (`**/*.log` against `src/a.txt`).
    prefix: String,
    suffix: String,
    /// The pattern is all literal: a match is equality.
    literal: bool,
}

/// The literal run of characters `tokens` start with.
fn literal_run<'a>(tokens: impl Iterator<Item = &'a Token>) -> String {
    tokens
        .map_while(|t| match t {
            Token::Lit(c) => Some(*c),
            _ => None,
        })
        .collect()
}

impl Glob {
    /// Compiles `pattern` (already cleaned by the caller when it comes from a
    /// `.dockerignore`), rejecting what Go's `filepath.Match` rejects.
    pub fn new(pattern: &str) -> Result<Glob, BadPattern> {
        let bad = |reason| BadPattern {
            pattern: pattern.to_string(),
            reason,
        };
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    i += 2;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i >= chars.len() {
                        tokens.push(Token::Rest);
                    } else {
                        tokens.push(Token::Segments);
                    }
                    continue;
                }
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '\\' => {
                    i += 1;
                    match chars.get(i) {
                        Some(&e) => tokens.push(Token::Lit(e)),
                        None => return Err(bad("a trailing '\\' escapes nothing")),
                    }
                }
                '[' => {
                    i += 1;
                    let mut negated = false;
                    if chars.get(i) == Some(&'^') {
                        negated = true;
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        if chars.get(i) == Some(&']') && !ranges.is_empty() {
                            i += 1;
                            break;
                        }
                        let (lo, next) = class_char(&chars, i).map_err(bad)?;
                        i = next;
                        let mut hi = lo;
                        if chars.get(i) == Some(&'-') {
                            let (h, next) = class_char(&chars, i + 1).map_err(bad)?;
                            hi = h;
                            i = next;
                        }
                        ranges.push((lo, hi));
                    }
                    tokens.push(Token::Class { negated, ranges });
                    continue;
                }
                other => tokens.push(Token::Lit(other)),
            }
            i += 1;
        }
        let prefix = literal_run(tokens.iter());
        let literal = prefix.chars().count() == tokens.len();
        let suffix = if literal {
            String::new()
        } else {
            let mut s: Vec<char> = literal_run(tokens.iter().rev()).chars().collect();
            s.reverse();
            s.into_iter().collect()
        };
        Ok(Glob {
            source: pattern.to_string(),
            tokens,
            prefix,
            suffix,
            literal,
        })
    }

    /// The pattern text this glob was compiled from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `path` matches (anchored at both ends).
    pub fn is_match(&self, path: &str) -> bool {
        if self.literal {
            return path == self.prefix;
        }
        if !path.starts_with(&self.prefix) || !path.ends_with(&self.suffix) {
            return false;
        }
        let s: Vec<char> = path.chars().collect();
        let width = s.len() + 1;
        let mut failed = vec![false; (self.tokens.len() + 1) * width];
        self.match_at(0, 0, &s, &mut failed, width)
    }

    fn match_at(&self, ti: usize, si: usize, s: &[char], failed: &mut [bool], w: usize) -> bool {
        if failed[ti * w + si] {
            return false;
        }
        let ok = match self.tokens.get(ti) {
            None => si == s.len(),
            Some(Token::Rest) => true,
            Some(Token::Lit(c)) => {
                s.get(si) == Some(c) && self.match_at(ti + 1, si + 1, s, failed, w)
            }
            Some(Token::Any) => {
                matches!(s.get(si), Some(&c) if c != '/')
                    && self.match_at(ti + 1, si + 1, s, failed, w)
            }
            Some(Token::Class { negated, ranges }) => match s.get(si) {
                Some(&c) => {
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    inside != *negated && self.match_at(ti + 1, si + 1, s, failed, w)
                }
                None => false,
            },
            Some(Token::Star) => {
                let mut j = si;
                loop {
                    if self.match_at(ti + 1, j, s, failed, w) {
                        break true;
                    }
                    if j >= s.len() || s[j] == '/' {
                        break false;
                    }
                    j += 1;
                }
            }
            Some(Token::Segments) => {
                self.match_at(ti + 1, si, s, failed, w)
                    || (si..s.len())
                        .filter(|&j| s[j] == '/')
                        .any(|j| self.match_at(ti + 1, j + 1, s, failed, w))
            }
        };
        if !ok {
            failed[ti * w + si] = true;
        }
        ok
    }
}

/// One character of a class (Go's `getEsc`): not `-` or `]` unescaped, `\`
/// escapes, and the class must not end right after it.
fn class_char(chars: &[char], i: usize) -> Result<(char, usize), &'static str> {
    let mut i = i;
    match chars.get(i) {
        None => return Err("unclosed '['"),
        Some('-') | Some(']') => return Err("'-' or ']' where a class character was expected"),
        Some('\\') => i += 1,
        Some(_) => {}
    }
    match chars.get(i) {
        None => Err("unclosed '['"),
        Some(&c) if i + 1 < chars.len() => Ok((c, i + 1)),
        Some(_) => Err("unclosed '['"),
    }
}

/// Go's `filepath.Clean` on a slash-separated path: collapse `//`, drop `.`,
/// resolve `..` lexically, drop a trailing `/`; empty becomes `.`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if matches!(out.last(), Some(&l) if l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_star_spans_segments_only_at_segment_starts() {
        let g = Glob::new("**file").unwrap();
        assert!(g.is_match("file"));
        assert!(g.is_match("a/b/file"));
        assert!(!g.is_match("xfile"));
    }

    #[test]
    fn star_stops_at_slash() {
        let g = Glob::new("a/*.txt").unwrap();
        assert!(g.is_match("a/x.txt"));
        assert!(!g.is_match("a/d/x.txt"));
    }

    #[test]
    fn bad_classes_are_errors() {
        for p in ["[", "[]a]", "[-x]", "[x-]", "[a-b-c]", "\\", "a["] {
            assert!(Glob::new(p).is_err(), "{p} should be rejected");
        }
        assert!(Glob::new("[\\-x]").unwrap().is_match("-"));
    }

    #[test]
    fn pathological_stars_are_fast() {
        let g = Glob::new("*a*a*a*a*a*a*a*a*a*a*b").unwrap();
        let s = "a".repeat(200);
        assert!(!g.is_match(&s));
    }

    #[test]
    fn clean_is_lexical() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("/"), "/");
    }
}
