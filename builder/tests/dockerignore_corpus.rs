//! Every vector of ../shared/corpus/dockerignore against our matcher:
//! moby/patternmatcher's tables (both matching APIs), ignorefile parsing, and
//! BuildKit's end-to-end context-filtering scenarios (checked at the
//! selection level: which files a `COPY . .` would see).

use std::path::PathBuf;

use builder::context::dockerignore::{Matcher, load_for_build, parse_ignore_file};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    let shared = std::env::var_os("STRATA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    let dir = shared.join("corpus/dockerignore");
    assert!(
        dir.is_dir(),
        "the dockerignore corpus is missing at {} (set STRATA_SHARED)",
        dir.display()
    );
    dir
}

#[test]
fn patternmatcher_table() {
    let text = std::fs::read_to_string(corpus_dir().join("patternmatcher-cases.jsonl")).unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        n += 1;
        let path = case["path"].as_str().unwrap();
        let patterns: Vec<&str> = case["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let api = case["api"].as_str().unwrap();
        let got = Matcher::new(&patterns).map(|m| match api {
            "MatchesOrParentMatches" => m.excludes(path),
            "Matches" => m.excludes_legacy(path),
            other => panic!("unknown api {other}"),
        });
        let ok = match (&case["expected"], &got) {
            (Value::String(s), Err(_)) if s == "error" => true,
            (Value::Bool(b), Ok(g)) => b == g,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{api} {path:?} {patterns:?}: expected {}, got {got:?}",
                case["expected"]
            ));
        }
    }
    assert_eq!(n, 137, "the corpus should hold 137 rows");
    assert!(
        failures.is_empty(),
        "{} of {n} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn tsv_and_jsonl_agree() {
    // The TSV is the same table; check our reading of it so both files count.
    let dir = corpus_dir();
    let tsv = std::fs::read_to_string(dir.join("patternmatcher-cases.tsv")).unwrap();
    let rows: Vec<&str> = tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 137);
    for row in rows {
        let f: Vec<&str> = row.split('\t').collect();
        let (api, path, expected, patterns) = (f[1], f[3], f[4], &f[5..]);
        let got = Matcher::new(patterns).map(|m| {
            if api == "Matches" {
                m.excludes_legacy(path)
            } else {
                m.excludes(path)
            }
        });
        let ok = match expected {
            "error" => got.is_err(),
            "true" => got == Ok(true),
            "false" => got == Ok(false),
            e => panic!("bad expected field {e}"),
        };
        assert!(ok, "{row}: got {got:?}");
    }
}

#[test]
fn ignorefile_readall() {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus_dir().join("ignorefile-readall.json")).unwrap(),
    )
    .unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let got = match c["input"].as_str() {
            Some(s) => parse_ignore_file(s),
            None => Vec::new(),
        };
        let want: Vec<String> = c["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{}", c["name"]);
    }
}

#[test]
fn buildkit_context_scenarios() {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus_dir().join("buildkit-context-scenarios.json")).unwrap(),
    )
    .unwrap();
    let scenarios = v["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 4);
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (file, content) in s["context"].as_object().unwrap() {
            std::fs::write(dir.path().join(file), content.as_str().unwrap()).unwrap();
        }
        let df = dir.path().join(s["dockerfile"].as_str().unwrap());
        let loaded = load_for_build(dir.path(), Some(&df));
        if s["expect_error"] == Value::Bool(true) {
            assert!(loaded.is_err(), "{name}: expected an error");
            continue;
        }
        let (m, _) = loaded.unwrap_or_else(|e| panic!("{name}: {e}"));
        let sel = builder::context::select::select(
            dir.path(),
            &m,
            &builder::context::select::CopySpec::new(vec![".".into()], "/"),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let seen: Vec<String> = sel.entries.iter().map(|e| e.rel.clone()).collect();
        if let Some(present) = s["expect_present"].as_object() {
            for (f, content) in present {
                assert!(
                    seen.contains(f),
                    "{name}: {f} should be selected, got {seen:?}"
                );
                let got = std::fs::read_to_string(dir.path().join(f)).unwrap();
                assert_eq!(got, content.as_str().unwrap());
            }
        }
        if let Some(absent) = s["expect_absent"].as_array() {
            for f in absent {
                let f = f.as_str().unwrap();
                assert!(
                    !seen.iter().any(|x| x == f),
                    "{name}: {f} must be excluded, got {seen:?}"
                );
            }
        }
        if s["expect_success"] == Value::Bool(true) {
            // The scenario's RUN asserts the filtering: Dockerfile expects foo
            // and not bar, Dockerfile2 the reverse.
            let (want, not) = if name.ends_with("/Dockerfile2") {
                ("bar", "foo")
            } else {
                ("foo", "bar")
            };
            assert!(
                seen.iter().any(|x| x == want),
                "{name}: {want} missing from {seen:?}"
            );
            assert!(
                !seen.iter().any(|x| x == not),
                "{name}: {not} must be excluded from {seen:?}"
            );
        }
    }
}
