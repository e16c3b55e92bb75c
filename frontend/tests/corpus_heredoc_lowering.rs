//! Heredoc vectors at the instruction level (`corpus/heredoc`, kinds
//! `copy-sources` and `run-command`) and the COPY heredoc contents of the
//! build-output cases, checked on the lowered graph.

mod semantics_support;

use std::collections::BTreeMap;

use frontend::{BuildGraph, BuildOptions, EmptyResolver, FileKind, Op};
use semantics_support::json;
use serde_json::Value;

fn lower(text: &str) -> BuildGraph {
    let df = frontend::parse("Dockerfile", text).unwrap_or_else(|e| panic!("parse: {e}"));
    frontend::lower(&df, &BuildOptions::default(), &EmptyResolver)
        .unwrap_or_else(|e| panic!("lower: {e}"))
}

#[test]
fn copy_sources_cases() {
    let cases = json("heredoc/cases.json");
    let mut n = 0;
    for case in cases.as_array().expect("array") {
        if case["kind"] != "copy-sources" {
            continue;
        }
        n += 1;
        let name = case["name"].as_str().unwrap_or("?");
        let text = format!(
            "FROM scratch\n{}\n",
            case["dockerfile"].as_str().expect("dockerfile")
        );
        let g = lower(&text);
        let stage = g.target_stage().expect("target");
        let Op::File(f) = &stage.steps[0].op else {
            panic!("{name}: not a file op");
        };
        let expect = &case["expect"];
        assert_eq!(
            f.dest,
            expect["dest_path"].as_str().expect("dest"),
            "{name}"
        );
        let want_paths: Vec<&str> = expect["source_paths"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(f.sources, want_paths, "{name}");
        let want_inline = expect["source_contents"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(f.inline.len(), want_inline.len(), "{name}");
        for (have, want) in f.inline.iter().zip(&want_inline) {
            assert_eq!(have.path, want["path"].as_str().expect("path"), "{name}");
            // No variables in these bodies: expanded or not, the data is the
            // (chomped) body.
            assert_eq!(have.content, want["data"].as_str().expect("data"), "{name}");
        }
    }
    assert_eq!(n, 8);
}

#[test]
fn run_command_cases() {
    let cases = json("heredoc/cases.json");
    let mut n = 0;
    for case in cases.as_array().expect("array") {
        if case["kind"] != "run-command" {
            continue;
        }
        n += 1;
        let name = case["name"].as_str().unwrap_or("?");
        let text = format!(
            "FROM scratch\n{}\n",
            case["dockerfile"].as_str().expect("dockerfile")
        );
        let g = lower(&text);
        let stage = g.target_stage().expect("target");
        let Op::Exec(e) = &stage.steps[0].op else {
            panic!("{name}: not an exec op");
        };
        let expect = &case["expect"];
        let cmd: Vec<&str> = expect["cmd_line"]
            .as_array()
            .expect("cmd_line")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let files = expect["files"].as_array().cloned().unwrap_or_default();
        if expect["prepend_shell"] == false {
            assert_eq!(e.argv, cmd, "{name}");
            continue;
        }
        assert_eq!(&e.argv[..2], ["/bin/sh", "-c"], "{name}");
        let script = &e.argv[2];
        if files.is_empty() {
            assert_eq!(script, cmd[0], "{name}");
        } else if cmd[0]
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .chars()
            .all(|c| c.is_alphanumeric())
        {
            // A lone heredoc: its (chomped) body is the script.
            let data = files[0]["data"].as_str().expect("data");
            let chomped: String = if files[0]["chomp"] == true {
                data.lines()
                    .map(|l| format!("{}\n", l.trim_start_matches('\t')))
                    .collect()
            } else {
                data.to_string()
            };
            assert_eq!(script, &chomped, "{name}");
        } else {
            // Command plus heredoc: the shell reads the body itself.
            let data = files[0]["data"].as_str().expect("data");
            let fname = files[0]["name"].as_str().expect("name");
            assert_eq!(script, &format!("{}\n{data}{fname}", cmd[0]), "{name}");
        }
    }
    assert_eq!(n, 6);
}

/// The COPY heredoc outputs of two build cases, as far as they depend only
/// on the Dockerfile: quotes stay, escapes are processed, variables expand
/// unless the heredoc word is quoted.
#[test]
fn copy_heredoc_contents_of_build_cases() {
    let cases = json("heredoc/cases.json");
    for name in [
        "build/copy-heredoc-special-symbols",
        "build/heredoc-var-substitution",
    ] {
        let case = cases
            .as_array()
            .expect("array")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let g = lower(case["dockerfile"].as_str().expect("dockerfile"));
        let mut produced: BTreeMap<String, String> = BTreeMap::new();
        for stage in &g.stages {
            for step in &stage.steps {
                if let Op::File(f) = &step.op
                    && f.kind == FileKind::Copy
                    && f.inline.len() == 1
                {
                    let file = f.dest.rsplit('/').next().unwrap_or("").to_string();
                    produced.insert(file, f.inline[0].content.clone());
                }
            }
        }
        let mut checked = 0;
        for (file, want) in case["expect"]["output_files"].as_object().expect("outputs") {
            if let Some(have) = produced.get(file) {
                checked += 1;
                assert_eq!(have, want.as_str().expect("content"), "{name}: {file}");
            }
        }
        assert!(checked >= 7, "{name}: only {checked} files checked");
    }
}

#[test]
fn heredoc_as_copy_destination_is_rejected() {
    let cases = json("heredoc/cases.json");
    let case = cases
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["kind"] == "instruction-error")
        .expect("instruction-error case");
    let text = format!(
        "FROM scratch\n{}\n",
        case["dockerfile"].as_str().expect("dockerfile")
    );
    let want = case["expect"]["instruction_error_contains"]
        .as_str()
        .expect("text");
    let err = frontend::parse("Dockerfile", &text)
        .and_then(|df| frontend::lower(&df, &BuildOptions::default(), &EmptyResolver))
        .expect_err("heredoc destination accepted");
    assert!(err.message.contains(want), "{err}");
}
