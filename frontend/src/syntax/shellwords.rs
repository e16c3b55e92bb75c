//! A small shell-word splitter for heredoc detection.
//!
//! BuildKit finds heredocs by running its shell lexer over the instruction
//! line in "raw" modes (quotes and escapes kept, unset variables left alone)
//! and then again over each candidate terminator word with quote removal on.
//! This module provides just those modes. It is not the word *expander*
//! (that is `crate::words`): it never substitutes variables.

use super::split::Piece;

/// How quotes and escapes are treated while splitting.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// Keep quote characters in the words.
    pub raw_quotes: bool,
    /// Keep backslashes (and the escaped character) in the words.
    pub raw_escapes: bool,
    /// Treat `<<` (and `<<-`) followed by blanks as the start of one word,
    /// blanks included, the way BuildKit's lexer keeps `<< EOF` together.
    pub heredoc_words: bool,
}

/// Splits `text` into shell words. Fails on an unterminated quote.
pub fn shell_words(text: &str, mode: Mode) -> Result<Vec<Piece>, &'static str> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut start = 0;
    let mut it = text.char_indices().peekable();
    let begin = |in_word: &mut bool, start: &mut usize, at: usize| {
        if !*in_word {
            *in_word = true;
            *start = at;
        }
    };
    while let Some((pos, ch)) = it.next() {
        match ch {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(Piece {
                        start,
                        end: pos,
                        value: std::mem::take(&mut word),
                    });
                    in_word = false;
                }
            }
            '\'' => {
                begin(&mut in_word, &mut start, pos);
                if mode.raw_quotes {
                    word.push('\'');
                }
                loop {
                    match it.next() {
                        None => {
                            return Err(
                                "unexpected end of statement while looking for matching single-quote",
                            );
                        }
                        Some((_, '\'')) => break,
                        Some((_, c)) => word.push(c),
                    }
                }
                if mode.raw_quotes {
                    word.push('\'');
                }
            }
            '"' => {
                begin(&mut in_word, &mut start, pos);
                if mode.raw_quotes {
                    word.push('"');
                }
                loop {
                    match it.next() {
                        None => {
                            return Err(
                                "unexpected end of statement while looking for matching double-quote",
                            );
                        }
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match it.next() {
                            None => {
                                return Err(
                                    "unexpected end of statement while looking for matching double-quote",
                                );
                            }
                            Some((_, c)) => {
                                let special = matches!(c, '"' | '\\' | '$' | '`');
                                if mode.raw_escapes || !special {
                                    word.push('\\');
                                }
                                word.push(c);
                            }
                        },
                        Some((_, c)) => word.push(c),
                    }
                }
                if mode.raw_quotes {
                    word.push('"');
                }
            }
            '\\' => {
                begin(&mut in_word, &mut start, pos);
                if mode.raw_escapes {
                    word.push('\\');
                }
                if let Some((_, c)) = it.next() {
                    word.push(c);
                }
            }
            '$' if it.peek().map(|&(_, c)| c) == Some('{') => {
                // `${...}` stays one raw unit: variables are never expanded here.
                begin(&mut in_word, &mut start, pos);
                word.push('$');
                for (_, c) in it.by_ref() {
                    word.push(c);
                    if c == '}' {
                        break;
                    }
                }
            }
            '<' if mode.heredoc_words && it.peek().map(|&(_, c)| c) == Some('<') => {
                begin(&mut in_word, &mut start, pos);
                it.next();
                word.push_str("<<");
                if it.peek().map(|&(_, c)| c) == Some('-') {
                    it.next();
                    word.push('-');
                }
                while let Some(&(_, c)) = it.peek() {
                    if c != ' ' && c != '\t' {
                        break;
                    }
                    word.push(c);
                    it.next();
                }
            }
            c => {
                begin(&mut in_word, &mut start, pos);
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(Piece {
            start,
            end: text.len(),
            value: word,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: Mode = Mode {
        raw_quotes: true,
        raw_escapes: true,
        heredoc_words: true,
    };
    const COOKED: Mode = Mode {
        raw_quotes: false,
        raw_escapes: false,
        heredoc_words: false,
    };

    fn words(text: &str, mode: Mode) -> Vec<String> {
        shell_words(text, mode)
            .unwrap()
            .into_iter()
            .map(|p| p.value)
            .collect()
    }

    #[test]
    fn line_mode_keeps_everything_raw() {
        assert_eq!(
            words(r#"RUN "<<A" 'b c' \x $V ${X:-a b} << EOF"#, LINE),
            vec![
                "RUN",
                "\"<<A\"",
                "'b c'",
                "\\x",
                "$V",
                "${X:-a b}",
                "<< EOF"
            ]
        );
        assert_eq!(words("RUN <<- EOF x", LINE), vec!["RUN", "<<- EOF", "x"]);
    }

    #[test]
    fn cooked_mode_removes_quotes_and_escapes() {
        assert_eq!(
            words(r#"eo'f' "a\"b" c\'d"#, COOKED),
            vec!["eof", "a\"b", "c'd"]
        );
        assert!(shell_words("'EOF", COOKED).is_err());
        assert!(shell_words("EOF\"", COOKED).is_err());
    }
}
