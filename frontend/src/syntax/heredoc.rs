//! Heredocs: recognising `<<WORD` in an instruction line and reading bodies.

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

    #[test]
    fn chomp_strips_only_leading_tabs() {
        assert_eq!(chomp("\thello\n\tworld\n"), "hello\nworld\n");
        assert_eq!(chomp("\t\t a\t\n  b"), " a\t\n  b");
    }
}
