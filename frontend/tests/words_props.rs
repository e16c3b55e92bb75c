//! Property tests: word expansion never panics and behaves consistently.

use std::collections::BTreeMap;

use frontend::words::Lexer;
use proptest::prelude::*;

fn env() -> BTreeMap<String, String> {
    [("A", "x y"), ("B", ""), ("C", "a*b/c"), ("D", "한국")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Strings biased towards the lexer's special characters.
fn shellish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("$".to_string()),
            Just("${".to_string()),
            Just("}".to_string()),
            Just("\\".to_string()),
            Just("`".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just(":-".to_string()),
            Just("#".to_string()),
            Just("%".to_string()),
            Just("/".to_string()),
            Just("*".to_string()),
            Just("?".to_string()),
            Just(" ".to_string()),
            "[A-D]".prop_map(|s| s),
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn expansion_never_panics(word in shellish(), backtick in any::<bool>()) {
        let lexer = Lexer::new(if backtick { '`' } else { '\\' });
        let e = env();
        let single = lexer.process_word(&word, &e);
        let list = lexer.process_words(&word, &e);
        let _ = lexer.process_heredoc(&word, &e);
        // Both modes agree on whether the word is valid.
        prop_assert_eq!(single.is_ok(), list.is_ok());
        // Field splitting never yields empty words (as upstream: `""`
        // alone gives no word at all).
        if let Ok(words) = list {
            prop_assert!(words.iter().all(|w| !w.is_empty()), "{:?}", words);
        }
    }

    #[test]
    fn plain_words_are_unchanged(word in "[a-zA-Z0-9_./-]{0,30}") {
        let got = Lexer::default().process_word(&word, &env());
        prop_assert_eq!(got.ok(), Some(word));
    }
}
