//! Conformance of word expansion against BuildKit's shell lexer vectors
//! (`corpus/shell`, see its PROVENANCE.md for the formats).

mod semantics_support;

use std::collections::{BTreeMap, BTreeSet};

use frontend::words::Lexer;
use semantics_support::{json, read};

fn env_var_test_env() -> BTreeMap<String, String> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn env_var_test_rows_a_and_u() {
    let text = read("shell/envVarTest");
    let env = env_var_test_env();
    let lexer = Lexer::default();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(fields.len(), 3, "malformed envVarTest line {line:?}");
        let (platform, input, expected) = (fields[0], fields[1], fields[2]);
        if platform == "W" {
            continue;
        }
        assert!(
            platform == "A" || platform == "U",
            "bad platform in {line:?}"
        );
        checked += 1;
        let got = lexer.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(s), e) => s == e && e != "error",
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(checked > 100, "only {checked} envVarTest rows found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn words_test_word_lists() {
    let text = read("shell/wordsTest");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let lexer = Lexer::default();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(def) = line.strip_prefix("ENV ") {
            let def = def.trim_start_matches(' ');
            let (k, v) = def.split_once('=').expect("ENV line has name=value");
            env.insert(k.to_string(), v.to_string());
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (input, expected) = line.split_once('|').expect("wordsTest line has one |");
        assert!(!expected.contains('|'), "more than one | in {line:?}");
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        checked += 1;
        let got = lexer.process_words(input, &env);
        let ok = match &got {
            Err(_) => expected == ["error"],
            Ok(words) => *words == expected,
        };
        if !ok {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(checked >= 20, "only {checked} wordsTest rows found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn string_set(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn substitution_cases() {
    let doc = json("shell/substitution-cases.json");
    let cases = doc["cases"].as_array().expect("cases array");
    assert!(cases.len() >= 50);
    let lexer = Lexer::default();
    let mut failures = Vec::new();
    for case in cases {
        let input = case["input"].as_str().expect("input");
        let env: BTreeMap<String, String> = case["env"]
            .as_object()
            .expect("env")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("env value").to_string()))
            .collect();
        let got = lexer.process_word_with_matches(input, &env);
        if case["error"].as_bool() == Some(true) {
            match &got {
                Err(e) => {
                    if let Some(needle) = case.get("error_contains").and_then(|v| v.as_str())
                        && !e.to_string().contains(needle)
                    {
                        failures.push(format!("{input:?}: error {e} lacks {needle:?}"));
                    }
                }
                Ok(r) => failures.push(format!("{input:?}: expected error, got {r:?}")),
            }
            continue;
        }
        let expected = case["expected"].as_str().expect("expected");
        match &got {
            Ok(r) => {
                if r.result != expected {
                    failures.push(format!(
                        "{input:?}: expected {expected:?}, got {:?}",
                        r.result
                    ));
                }
                if let Some(m) = case.get("matched")
                    && string_set(m) != r.matched
                {
                    failures.push(format!("{input:?}: matched {:?}", r.matched));
                }
                if let Some(m) = case.get("unmatched")
                    && string_set(m) != r.unmatched
                {
                    failures.push(format!("{input:?}: unmatched {:?}", r.unmatched));
                }
            }
            Err(e) => failures.push(format!("{input:?}: unexpected error {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
