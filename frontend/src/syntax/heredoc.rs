//! Heredocs: recognising `<<WORD` in an instruction line.
//!
//! BuildKit's two-step rule: split the whole line into raw shell words, then
//! match each against `^(\d*)<<(-?)\s*([^<]*)$`. The terminator part must be
//! one shell word; its name is that word with quotes removed, and the body is
//! expanded only if no quote took effect (`<<eo\'f` still expands, `<<eo'f'`
//! does not).

use super::shellwords::{Mode, shell_words};
use super::split::Piece;

/// A heredoc marker found in an instruction line (the body comes later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub name: String,
    pub file_descriptor: u64,
    pub expand: bool,
    pub chomp: bool,
}

const COOKED: Mode = Mode {
    raw_quotes: false,
    raw_escapes: false,
    heredoc_words: false,
};
const RAW_QUOTES: Mode = Mode {
    raw_quotes: true,
    raw_escapes: false,
    heredoc_words: false,
};
const LINE: Mode = Mode {
    raw_quotes: true,
    raw_escapes: true,
    heredoc_words: true,
};

/// Is `word` a heredoc marker? `Ok(None)` when it is not; `Err` when it
/// looks like one but its quotes do not balance.
pub fn parse_heredoc_word(word: &str) -> Result<Option<Marker>, &'static str> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let cooked = shell_words(rest, COOKED)?;
    let [name] = cooked.as_slice() else {
        return Ok(None);
    };
    let raw = shell_words(rest, RAW_QUOTES)?;
    let [raw_name] = raw.as_slice() else {
        return Err("internal lexing of heredoc produced inconsistent results");
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Marker {
        name: name.value.clone(),
        // Like Go's ParseUint with the error ignored: overflow gives 0.
        file_descriptor: word[..digits].parse().unwrap_or(0),
        expand: quotes(&name.value) == quotes(&raw_name.value),
        chomp,
    }))
}

/// Every heredoc marker in an instruction line, in order, with the byte
/// range of its word in `line`. A line the lexer cannot split (an
/// unterminated quote) has none, as in BuildKit.
pub fn heredocs_from_line(line: &str) -> Result<Vec<(Piece, Marker)>, &'static str> {
    let Ok(words) = shell_words(line, LINE) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for w in words {
        if let Some(m) = parse_heredoc_word(&w.value)? {
            out.push((w, m));
        }
    }
    Ok(out)
}

/// Removes every run of leading tab characters at the start of each line
/// (only tabs, not spaces), which is what `<<-` asks for.
pub fn chomp(body: &str) -> String {
    body.split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(word: &str) -> Option<(String, bool, bool, u64)> {
        parse_heredoc_word(word)
            .unwrap()
            .map(|m| (m.name, m.expand, m.chomp, m.file_descriptor))
    }

    #[test]
    fn chomp_strips_only_leading_tabs() {
        assert_eq!(chomp("\thello\n\tworld\n"), "hello\nworld\n");
        assert_eq!(chomp("\t\t a\t\n  b"), " a\t\n  b");
    }

    #[test]
    fn heredoc_words() {
        assert_eq!(name("<<EOF"), Some(("EOF".into(), true, false, 0)));
        assert_eq!(name("<<-'EOF'"), Some(("EOF".into(), false, true, 0)));
        assert_eq!(name("3<<EOF"), Some(("EOF".into(), true, false, 3)));
        assert_eq!(name("<<eo\\'f"), Some(("eo'f".into(), true, false, 0)));
        assert_eq!(name("<<'e'o\\'f"), Some(("eo'f".into(), false, false, 0)));
        assert_eq!(name("<< -EOF"), Some(("-EOF".into(), true, false, 0)));
        assert_eq!(name("<<$EOF"), Some(("$EOF".into(), true, false, 0)));
        for not in [
            "", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "a<<EOF",
        ] {
            assert_eq!(name(not), None, "{not:?}");
        }
        for bad in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc_word(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn markers_in_lines() {
        let names = |l: &str| {
            heredocs_from_line(l)
                .unwrap()
                .into_iter()
                .map(|(_, m)| m.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("RUN <<EOF <<EOF2"), vec!["EOF", "EOF2"]);
        assert_eq!(names("RUN <<  EOF  > foo"), vec!["EOF"]);
        assert_eq!(names("RUN <<- EOF"), vec!["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        assert!(names("RUN echo 'unterminated <<EOF").is_empty());
    }
}
