//! Dockerfile word expansion: BuildKit's shell lexer semantics.
//!
//! Dockerfile instructions (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL,
//! USER, VOLUME, WORKDIR, ARG and the flags of RUN/COPY/ADD) expand their
//! arguments with a small subset of POSIX shell rules: quote removal,
//! escapes (with the Dockerfile's escape character), `$VAR` / `${VAR}` and
//! the `${VAR<op>word}` modifiers. This module reproduces BuildKit's
//! `frontend/dockerfile/shell` lexer so that strata expands words exactly as
//! `docker build` does, including its error cases.
//!
//! Two modes exist, as upstream:
//! * [`Lexer::process_word`]: one word, no field splitting.
//! * [`Lexer::process_words`]: a word list, split on unquoted whitespace
//!   (including whitespace produced by unquoted expansions).

mod glob;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use glob::Pattern;

/// Looks up variables during expansion. `None` means unset; `Some("")` is
/// set but empty, which matters for `${VAR-w}` versus `${VAR:-w}`.
pub trait Env {
    /// The value of `name`, if it is set.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl Env for [(String, String)] {
    /// The last definition wins, like a process environment built by
    /// appending.
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self.as_slice(), name)
    }
}

/// An expansion error, with BuildKit's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordError {
    /// The word being processed, as written.
    pub word: String,
    /// What went wrong, e.g. `FOO: is not allowed to be unset`.
    pub reason: String,
}

/// Words longer than this are cut in messages: a hostile Dockerfile's
/// 600 KB word would otherwise make a 600 KB error line.
const SHOWN_WORD: usize = 200;

impl fmt::Display for WordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.word.len() <= SHOWN_WORD {
            return write!(f, "failed to process {:?}: {}", self.word, self.reason);
        }
        let mut end = SHOWN_WORD;
        while !self.word.is_char_boundary(end) {
            end -= 1;
        }
        let cut = &self.word[..end];
        write!(
            f,
            "failed to process {cut:?}… ({} bytes): {}",
            self.word.len(),
            self.reason
        )
    }
}

impl std::error::Error for WordError {}

/// The result of single-word processing with the variables it referenced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word.
    pub result: String,
    /// Names referenced and set (possibly empty).
    pub matched: BTreeSet<String>,
    /// Names referenced but unset.
    pub unmatched: BTreeSet<String>,
}

/// A word lexer for one escape character (`\` or `` ` ``).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

impl Lexer {
    /// A lexer using `escape` as the escape character (the `# escape=`
    /// directive).
    pub fn new(escape: char) -> Lexer {
        Lexer { escape }
    }

    /// Expands one word: variables, quote removal, escapes; no splitting.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, WordError> {
        self.process_word_with_matches(word, env).map(|e| e.result)
    }

    /// Like [`Lexer::process_word`], also reporting which variables the word
    /// referenced (used for the unused-build-arg warning).
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expansion, WordError> {
        if !word
            .chars()
            .any(|c| matches!(c, '$' | '\'' | '"') || c == self.escape)
        {
            // Nothing to expand, unquote or unescape: the word is its own
            // result (the common case, and the scanner would only copy it).
            return Ok(Expansion {
                result: word.to_string(),
                ..Default::default()
            });
        }
        let mut sw = Scanner::new(word, self.escape, env);
        let (result, _) = sw.run(word)?;
        Ok(Expansion {
            result,
            matched: sw.matched,
            unmatched: sw.unmatched,
        })
    }

    /// Expands a heredoc body (`COPY <<EOF` with an unquoted word): `$`
    /// expansions and escapes apply, but quotes are ordinary characters, as
    /// BuildKit does for heredoc content (`\$` gives `$`, `"x"` stays).
    pub fn process_heredoc(&self, body: &str, env: &dyn Env) -> Result<String, WordError> {
        let mut sw = Scanner::new(body, self.escape, env);
        sw.literal_quotes = true;
        sw.run(body).map(|(s, _)| s)
    }

    /// Expands a word list and splits it into fields on unquoted whitespace.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, WordError> {
        let mut sw = Scanner::new(word, self.escape, env);
        sw.run(word).map(|(_, words)| words)
    }
}

/// Accumulates field-split words alongside the single-word result.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// A character subject to field splitting.
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    /// A character that is part of a word whatever it is (escaped or quoted).
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

/// Reason text for a failed expansion, before it is wrapped into a
/// [`WordError`].
type Reason = String;

/// The character-level state of one expansion.
struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'a dyn Env,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    /// Quotes are ordinary characters (heredoc bodies).
    literal_quotes: bool,
    /// Current `${...}` nesting depth.
    depth: usize,
}

/// Deepest `${...${...}}` nesting accepted (far beyond any real Dockerfile).
const MAX_NESTING: usize = 64;

impl<'a> Scanner<'a> {
    fn new(word: &str, escape: char, env: &'a dyn Env) -> Scanner<'a> {
        Scanner {
            chars: word.chars().collect(),
            pos: 0,
            escape,
            env,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            literal_quotes: false,
            depth: 0,
        }
    }

    fn run(&mut self, word: &str) -> Result<(String, Vec<String>), WordError> {
        self.process_until(None, false).map_err(|reason| WordError {
            word: word.to_string(),
            reason,
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Processes until `stop` (consumed) or the end of input. With
    /// `raw_escapes` the escape character is kept in the output (patterns
    /// need it to tell `\*` from `*`).
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), Reason> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '\'' | '"' if self.literal_quotes => {
                    self.pos += 1;
                    result.push(c);
                    words.add_raw_char(c);
                }
                '\'' => {
                    let s = self.single_quoted()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.double_quoted()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                _ => {
                    self.pos += 1;
                    if c == self.escape {
                        if raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        // An escape at the very end is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        match stop {
            Some(s) => Err(format!(
                "unexpected end of statement while looking for matching {s}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    /// `'...'`: everything literal, no escapes.
    fn single_quoted(&mut self) -> Result<String, Reason> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    );
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// `"..."`: `$` expands; the escape character only escapes `"`, `$` and
    /// itself, and stays literal before anything else.
    fn double_quoted(&mut self) -> Result<String, Reason> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(c) => {
                    self.pos += 1;
                    let mut c = c;
                    if c == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    /// A variable name after `$`: letters, digits and `_`; a run of digits
    /// (positional parameter) or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.pos += 1;
            name.push(c);
        }
        name
    }

    /// `$name` or `${...}`; the scanner is at the `$`. Nesting is bounded
    /// so that hostile input cannot exhaust the stack.
    fn dollar(&mut self) -> Result<String, Reason> {
        if self.depth >= MAX_NESTING {
            return Err(format!(
                "substitutions nested more than {MAX_NESTING} levels deep"
            ));
        }
        self.depth += 1;
        let r = self.dollar_inner();
        self.depth -= 1;
        r
    }

    fn dollar_inner(&mut self) -> Result<String, Reason> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.name();
        let Some(op) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        match op {
            '}' => Ok(self.lookup(&name).unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => self.modifier(&name, op),
            '/' => self.replace(&name),
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    /// `${name<op>word}` for the default/alternate/error/trim forms.
    fn modifier(&mut self, name: &str, first: char) -> Result<String, Reason> {
        let mut op = first;
        let mut op_text = first.to_string();
        let null_is_unset = first == ':';
        if null_is_unset {
            match self.next() {
                Some(c) => {
                    op = c;
                    op_text.push(c);
                }
                None => return Err("syntax error: missing '}'".to_string()),
            }
        }
        let raw_escapes = op == '#' || op == '%';
        if null_is_unset && raw_escapes {
            return Err(format!("unsupported modifier ({op_text}) in substitution"));
        }
        let word = self.braced_word('}', raw_escapes, "syntax error: missing '}'")?;
        let value = self.lookup(name);
        let empty_or_unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            '-' => Ok(if empty_or_unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if empty_or_unset { String::new() } else { word }),
            '?' => match value {
                None => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    }
                )),
                Some(v) if null_is_unset && v.is_empty() => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    }
                )),
                Some(v) => Ok(v),
            },
            '#' | '%' => {
                let (longest, pat) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let pattern = Pattern::compile(pat)
                    .map_err(|e| format!("invalid pattern ({pat}) in substitution: {e}"))?;
                Ok(trim(&value, &pattern, op == '%', longest))
            }
            _ => Err(format!("unsupported modifier ({op_text}) in substitution")),
        }
    }

    /// Reads a sub-word up to `stop`, mapping "ran out of input" to
    /// `missing`.
    fn braced_word(
        &mut self,
        stop: char,
        raw_escapes: bool,
        missing: &str,
    ) -> Result<String, Reason> {
        match self.process_until(Some(stop), raw_escapes) {
            Ok((w, _)) => Ok(w),
            // As upstream: any failure that ran out of input is reported as
            // the missing terminator.
            Err(_) if self.peek().is_none() => Err(missing.to_string()),
            Err(e) => Err(e),
        }
    }

    /// `${name/pat/repl}` and `${name//pat/repl}`.
    fn replace(&mut self, name: &str) -> Result<String, Reason> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pat = self.braced_word('/', true, "syntax error: missing '/' in ${}")?;
        let repl = self.braced_word('}', true, "syntax error: missing '}'")?;
        let value = self.lookup(name).unwrap_or_default();
        let pattern = Pattern::compile(&pat)
            .map_err(|e| format!("invalid pattern ({pat}) in substitution: {e}"))?;
        Ok(replace(&value, &pattern, &repl, all))
    }
}

/// Removes the shortest/longest prefix (or suffix) matching `pattern`.
fn trim(value: &str, pattern: &Pattern, suffix: bool, longest: bool) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    if suffix {
        chars.reverse();
        let p = pattern.reversed();
        let n = p.prefix_len(&chars, longest).unwrap_or(0);
        chars.drain(..n);
        chars.reverse();
    } else {
        let n = pattern.prefix_len(&chars, longest).unwrap_or(0);
        chars.drain(..n);
    }
    chars.into_iter().collect()
}

/// Replaces the first (or every) match of `pattern` in `value` with `repl`.
/// Like Go's `ReplaceAllString`, an empty match right after a previous match
/// is skipped.
fn replace(value: &str, pattern: &Pattern, repl: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut copied = 0usize;
    let mut from = 0usize;
    let mut last_end: Option<usize> = None;
    while from <= chars.len() {
        let Some((start, end)) = pattern.find(&chars, from) else {
            break;
        };
        if start == end && last_end == Some(start) {
            // Empty match abutting the previous match: not a match.
            from = start + 1;
            continue;
        }
        out.extend(&chars[copied..start]);
        out.push_str(repl);
        copied = end;
        last_end = Some(end);
        from = if end > start { end } else { end + 1 };
        if !all {
            break;
        }
    }
    out.extend(&chars[copied.min(chars.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_are_cut_in_messages() {
        let short = WordError {
            word: "${a:?}".into(),
            reason: "a: is not allowed to be unset".into(),
        };
        assert_eq!(
            short.to_string(),
            "failed to process \"${a:?}\": a: is not allowed to be unset"
        );
        let long = WordError {
            word: "é".repeat(1000),
            reason: "r".into(),
        };
        let text = long.to_string();
        assert!(text.ends_with("… (2000 bytes): r"), "{text}");
        assert!(text.len() < 260, "{} bytes", text.len());
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn heredoc_mode_keeps_quotes_processes_escapes() {
        let e = env(&[("A", "x")]);
        let got = Lexer::default()
            .process_heredoc("'$A' \"$A\" \\$A \\\\\n", &e)
            .unwrap();
        assert_eq!(got, "'x' \"x\" $A \\\n");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let e = env(&[]);
        let word = "${a:-".repeat(100_000) + &"}".repeat(100_000);
        assert!(Lexer::default().process_word(&word, &e).is_err());
        let ok = "${a:-".repeat(10) + "x" + &"}".repeat(10);
        assert_eq!(Lexer::default().process_word(&ok, &e).unwrap(), "x");
    }

    #[test]
    fn backtick_escape() {
        let lx = Lexer::new('`');
        let e = env(&[("A", "x")]);
        assert_eq!(lx.process_word("a`$A\\b", &e).unwrap(), "a$A\\b");
    }

    #[test]
    fn error_mentions_word() {
        let e = env(&[]);
        let err = Lexer::default()
            .process_word("${FOO:?\"custom error\"}", &e)
            .unwrap_err();
        assert_eq!(err.reason, "FOO: custom error");
    }

    #[test]
    fn replace_empty_pattern_everywhere() {
        let p = Pattern::compile("").unwrap();
        assert_eq!(replace("ab", &p, "-", true), "-a-b-");
        assert_eq!(replace("ab", &p, "-", false), "-ab");
    }
}
