//! Fuzz target: a `.dockerignore` comes with the context, from strangers.
//! Input is `patterns \0 paths`: the patterns are read as an ignore file,
//! each path line is tested through both of Docker's entry points. Nothing
//! may panic, and a pattern list that builds must answer every path.
#![no_main]

use builder::context::dockerignore::{Matcher, parse_ignore_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (patterns, paths) = text.split_once('\0').unwrap_or((&text, "a/b/c\nx"));
    let list = parse_ignore_file(patterns);
    let Ok(m) = Matcher::new(&list) else {
        return;
    };
    for p in paths.lines().take(64) {
        let _ = m.excludes(p);
        let _ = m.excludes_legacy(p);
    }
});
