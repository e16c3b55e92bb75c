//! Fuzz target: no word may panic the word expander, in any mode.
#![no_main]

use std::collections::BTreeMap;

use frontend::words::Lexer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut env = BTreeMap::new();
    env.insert("A".to_string(), "a b".to_string());
    env.insert("EMPTY".to_string(), String::new());
    for escape in ['\\', '`'] {
        let lexer = Lexer::new(escape);
        let _ = lexer.process_word(&text, &env);
        let _ = lexer.process_words(&text, &env);
        let _ = lexer.process_heredoc(&text, &env);
    }
});
