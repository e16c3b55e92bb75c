//! Go's `%q` and `%v` formatting of string lists, which Docker uses in image
//! history (`CMD ["/bin/sh" "-c" "make"]`, `VOLUME [/data]`). Reproducing it
//! keeps strata's history byte-identical to `docker build`'s.

/// `strconv.Quote`: a double-quoted Go string literal.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `fmt.Sprintf("%q", list)`: `["a" "b"]`.
pub(crate) fn quote_list(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(" "))
}

/// `fmt.Sprintf("%v", list)`: `[a b]`.
pub(crate) fn plain_list(list: &[String]) -> String {
    format!("[{}]", list.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        let l = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "echo \"hi\"\n".to_string(),
        ];
        assert_eq!(quote_list(&l), r#"["/bin/sh" "-c" "echo \"hi\"\n"]"#);
        assert_eq!(plain_list(&l[..2]), "[/bin/sh -c]");
        assert_eq!(quote("é\u{1}"), "\"é\\x01\"");
    }
}
