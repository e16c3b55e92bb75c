//! Shell glob patterns as used inside `${VAR#pat}`, `${VAR%pat}` and
//! `${VAR/pat/repl}`.
//!
//! BuildKit turns these patterns into Go regular expressions; we match them
//! directly instead (no regex engine needed): `*` is any run of characters,
//! `?` any one character, and `\` escapes `*`, `?` and `\` (and is dropped in
//! front of `}` and `/`, which only needed escaping to get past the `${...}`
//! scanner). Any other escape is an error, as in BuildKit.

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Lit(char),
}

/// A compiled shell pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern(Vec<Token>);

impl Pattern {
    /// Compiles `pattern`, rejecting escapes other than `\*`, `\?`, `\\`,
    /// `\}` and `\/`.
    pub(crate) fn compile(pattern: &str) -> Result<Pattern, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '\\' => match chars.peek().copied() {
                    Some('}') | Some('/') => {}
                    Some(n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        tokens.push(Token::Lit(n));
                    }
                    Some(n) => return Err(format!("invalid escape '\\{n}'")),
                    None => return Err("invalid escape '\\' at end of pattern".to_string()),
                },
                other => tokens.push(Token::Lit(other)),
            }
        }
        Ok(Pattern(tokens))
    }

    /// Reverses the pattern so that a suffix search becomes a prefix search.
    pub(crate) fn reversed(&self) -> Pattern {
        Pattern(self.0.iter().rev().copied().collect())
    }

    /// Whether the pattern matches all of `text`.
    fn matches(&self, text: &[char]) -> bool {
        // Classic iterative wildcard matching with one backtrack point.
        let p = &self.0;
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            match p.get(pi) {
                Some(Token::Star) => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(Token::Any) => {
                    pi += 1;
                    ti += 1;
                }
                Some(Token::Lit(c)) if *c == text[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi.min(p.len())..].iter().all(|t| *t == Token::Star)
    }

    /// The length (in chars) of the shortest or longest prefix of `text` the
    /// pattern matches, if any.
    pub(crate) fn prefix_len(&self, text: &[char], longest: bool) -> Option<usize> {
        if longest {
            (0..=text.len())
                .rev()
                .find(|&end| self.matches(&text[..end]))
        } else {
            (0..=text.len()).find(|&end| self.matches(&text[..end]))
        }
    }

    /// The leftmost match at or after `from`, longest at that start, as
    /// `(start, end)` char indices.
    pub(crate) fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=text.len()).find_map(|start| {
            self.prefix_len(&text[start..], true)
                .map(|n| (start, start + n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn shortest_and_longest_prefix() {
        let p = Pattern::compile("*x").unwrap();
        assert_eq!(p.prefix_len(&chars("xxyy"), false), Some(1));
        assert_eq!(p.prefix_len(&chars("xxyy"), true), Some(2));
        assert_eq!(p.prefix_len(&chars("yy"), true), None);
    }

    #[test]
    fn escapes() {
        assert!(Pattern::compile("\\a").is_err());
        let p = Pattern::compile("\\**").unwrap();
        assert_eq!(p.prefix_len(&chars("**a"), true), Some(3));
        assert_eq!(p.prefix_len(&chars("a"), true), None);
    }

    #[test]
    fn find_leftmost() {
        let p = Pattern::compile("/?/").unwrap();
        assert_eq!(p.find(&chars("/a/foo/b/c"), 0), Some((0, 3)));
        assert_eq!(p.find(&chars("/a/foo/b/c"), 1), Some((6, 9)));
    }
}
