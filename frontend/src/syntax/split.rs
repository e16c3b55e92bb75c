//! The ways BuildKit's parser cuts argument text into pieces.
//!
//! Every splitter returns byte ranges into its input together with the piece
//! value, so callers can give each piece a [`crate::ast::Span`].

/// A piece of text cut out of an input: `start..end` in the input, and its
/// value (which may differ from the input slice, e.g. for decoded JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
    pub value: String,
}

/// Go's `unicode.IsSpace` applied to one byte taken as a rune, restricted to
/// ASCII (BuildKit scans flags and HEALTHCHECK types byte by byte).
pub fn is_go_ascii_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
pub fn is_re_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits on runs of `[\t\v\f\r ]`, keeping every piece verbatim (empty
/// pieces at the ends are kept, as Go's `regexp.Split` keeps them; callers
/// pass trimmed text).
pub fn split_re_whitespace(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_re_whitespace(c) {
            pieces.push(piece(text, start, i));
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !is_re_whitespace(d) {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            start = end;
        }
    }
    pieces.push(piece(text, start, text.len()));
    pieces
}

/// Like [`split_re_whitespace`] with at most two pieces: the text up to the
/// first run of blanks, and everything after it.
pub fn split_re_whitespace_once(text: &str) -> (Piece, Option<Piece>) {
    let Some((i, _)) = text.char_indices().find(|&(_, c)| is_re_whitespace(c)) else {
        return (piece(text, 0, text.len()), None);
    };
    let rest = text[i..]
        .char_indices()
        .find(|&(_, c)| !is_re_whitespace(c))
        .map_or(text.len(), |(j, _)| i + j);
    (piece(text, 0, i), Some(piece(text, rest, text.len())))
}

fn piece(text: &str, start: usize, end: usize) -> Piece {
    Piece {
        start,
        end,
        value: text[start..end].to_string(),
    }
}

/// BuildKit's `parseWords`: splits on Unicode whitespace outside quotes,
/// keeping quotes and escapes in the words. Used for ENV, LABEL and ARG.
///
/// Outside quotes the escape token and the character after it are kept as a
/// pair (so an escaped quote does not open a quoted run); inside `"` the same;
/// inside `'` the escape token is an ordinary character. An escape token at
/// the very end of the text is dropped.
pub fn parse_words(text: &str, escape: char) -> Vec<Piece> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    continue;
                }
                start = pos;
                phase = Phase::Word;
            }
            Phase::Word | Phase::Quote(_) => {}
        }
        match phase {
            Phase::Spaces => {}
            Phase::Word => {
                if ch.is_whitespace() {
                    words.push(Piece {
                        start,
                        end: pos,
                        value: std::mem::take(&mut word),
                    });
                    phase = Phase::Spaces;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                }
                if ch == escape {
                    match chars.next() {
                        None => continue, // an escape at the very end is dropped
                        Some((_, next)) => {
                            word.push(ch);
                            word.push(next);
                        }
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    match chars.next() {
                        None => {
                            phase = Phase::Word;
                            continue;
                        }
                        Some((_, next)) => {
                            word.push(ch);
                            word.push(next);
                        }
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if phase != Phase::Spaces && !word.is_empty() {
        words.push(Piece {
            start,
            end: text.len(),
            value: word,
        });
    }
    words
}

/// Why text that starts like a JSON array is not an exec-form command.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (or not an array): BuildKit falls back to the shell form.
    NotJson,
    /// Valid JSON array with a non-string element: a hard error in BuildKit.
    NotStrings,
}

/// BuildKit's `parseJSON`: a JSON array of strings, each element decoded,
/// with the byte range of each element's string token in `text`.
pub fn parse_json_array(text: &str) -> Result<Vec<Piece>, JsonError> {
    let lead = text.len() - text.trim_start().len();
    let body = &text[lead..];
    if !body.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(&go_surrogates(body)).map_err(|_| JsonError::NotJson)?;
    let mut strings = Vec::with_capacity(values.len());
    for v in values {
        match v {
            serde_json::Value::String(s) => strings.push(s),
            _ => return Err(JsonError::NotStrings),
        }
    }
    // The text is a valid array of strings, so every string token at depth
    // one is an element: find their byte ranges.
    let ranges = string_token_ranges(body);
    if ranges.len() != strings.len() {
        return Err(JsonError::NotJson);
    }
    Ok(ranges
        .into_iter()
        .zip(strings)
        .map(|((s, e), value)| Piece {
            start: lead + s,
            end: lead + e,
            value,
        })
        .collect())
}

/// Go's JSON decoder turns an unpaired UTF-16 surrogate escape (`\ud800`)
/// into U+FFFD where serde_json rejects the text; rewrite such escapes to
/// `\ufffd` (same length, so byte offsets stay valid) to decode like Go.
fn go_surrogates(json: &str) -> std::borrow::Cow<'_, str> {
    let b = json.as_bytes();
    let hex_at = |i: usize| -> Option<u32> {
        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
            return None;
        }
        let digits = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let mut lone = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        match hex_at(i) {
            Some(0xd800..=0xdbff) => match hex_at(i + 6) {
                Some(0xdc00..=0xdfff) => i += 12,
                _ => {
                    lone.push(i);
                    i += 6;
                }
            },
            Some(0xdc00..=0xdfff) => {
                lone.push(i);
                i += 6;
            }
            Some(_) => i += 6,
            None => i += 2,
        }
    }
    if lone.is_empty() {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut last = 0;
    for at in lone {
        out.push_str(&json[last..at]);
        out.push_str("\\ufffd");
        last = at + 6;
    }
    out.push_str(&json[last..]);
    std::borrow::Cow::Owned(out)
}

/// Byte ranges of the string tokens (quotes included) in valid JSON text.
fn string_token_ranges(json: &str) -> Vec<(usize, usize)> {
    let bytes = json.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push((start, (i + 1).min(bytes.len())));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: Vec<Piece>) -> Vec<String> {
        p.into_iter().map(|p| p.value).collect()
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let w = parse_words(r#"a="b c" d\ e 'f\' g"#, '\\');
        assert_eq!(values(w.clone()), vec![r#"a="b c""#, r"d\ e", r"'f\'", "g"]);
        assert_eq!((w[1].start, w[1].end), (8, 12));
        assert_eq!(values(parse_words("x\\", '\\')), vec!["x"]);
        assert_eq!(values(parse_words("a`  b", '`')), vec!["a` ", "b"]);
    }

    #[test]
    fn re_whitespace_split_keeps_verbatim_pieces() {
        assert_eq!(
            values(split_re_whitespace("a  \"b c\"\td")),
            vec!["a", "\"b", "c\"", "d"]
        );
        let (k, v) = split_re_whitespace_once("KEY  some value ");
        assert_eq!(k.value, "KEY");
        assert_eq!(v.map(|v| v.value), Some("some value ".to_string()));
    }

    #[test]
    fn json_arrays() {
        let p = parse_json_array(r#"[ "a\"b", "\u0041" ]"#).unwrap();
        assert_eq!(values(p.clone()), vec!["a\"b", "A"]);
        assert_eq!((p[0].start, p[0].end), (2, 8));
        assert_eq!(parse_json_array("[1]"), Err(JsonError::NotStrings));
        assert_eq!(parse_json_array("['a']"), Err(JsonError::NotJson));
        assert_eq!(parse_json_array("[\"a\""), Err(JsonError::NotJson));
        assert_eq!(parse_json_array("echo"), Err(JsonError::NotJson));
        assert_eq!(parse_json_array("[]"), Ok(vec![]));
        // Unpaired surrogates decode to U+FFFD, as in Go; pairs combine.
        let p = parse_json_array(r#"["a\ud800b", "\udc00", "\ud83d\ude00", "\\ud800"]"#).unwrap();
        assert_eq!(values(p), vec!["a\u{fffd}b", "\u{fffd}", "😀", "\\ud800"]);
    }
}
