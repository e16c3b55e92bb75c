//! Conformance: the parse-level cases of `shared/corpus/heredoc/cases.json`
//! (kinds parser-ast, chomp, parse-heredoc-word, heredocs-from-line,
//! instruction-error, copy-sources, run-command). The build-output and
//! build-steps kinds need a real build and are covered by builder tests.

mod parser_common;

use frontend::ast::{Args, Command};
use frontend::syntax::heredoc::{chomp, heredocs_from_line, parse_heredoc_word};
use frontend::syntax::sources::sources_and_dest;
use frontend::syntax::validate_instruction;
use serde_json::{Value, json};

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

#[test]
fn parse_level_heredoc_cases() {
    let cases = parser_common::cases("heredoc");
    let mut ran = std::collections::BTreeMap::<String, usize>::new();
    for case in &cases {
        let name = s(&case["name"]);
        let kind = s(&case["kind"]);
        let expect = &case["expect"];
        match kind {
            "parser-ast" => {
                let ast = frontend::parse("Dockerfile", s(&case["dockerfile"]))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                for child in expect["children"].as_array().expect("children") {
                    let i = child["index"].as_u64().expect("index") as usize;
                    let inst = &ast.instructions[i];
                    let first_line = inst.original.lines().next().unwrap_or_default();
                    assert_eq!(first_line, s(&child["first_line"]), "{name}: child {i}");
                    let got: Vec<Value> = inst
                        .heredocs
                        .iter()
                        .map(|h| {
                            json!({"name": h.name, "file_descriptor": h.file_descriptor,
                                   "expand": h.expand, "chomp": h.chomp, "content": h.content})
                        })
                        .collect();
                    let want = child["heredocs"].as_array().cloned().unwrap_or_default();
                    assert_eq!(got, want, "{name}: child {i} ({first_line})");
                }
            }
            "chomp" => assert_eq!(chomp(s(&case["input"])), s(&expect["output"]), "{name}"),
            "parse-heredoc-word" => {
                let got = parse_heredoc_word(s(&case["input"]));
                if expect["error"] == json!(true) {
                    assert!(got.is_err(), "{name}: expected an error, got {got:?}");
                } else if expect["is_heredoc"] == json!(false) {
                    assert_eq!(got, Ok(None), "{name}");
                } else {
                    let m = got.expect("no error").expect("a heredoc");
                    assert_eq!(m.name, s(&expect["name"]), "{name}");
                }
            }
            "heredocs-from-line" => {
                let got: Vec<String> = heredocs_from_line(s(&case["input"]))
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .into_iter()
                    .map(|(_, m)| m.name)
                    .collect();
                let want: Vec<String> = expect["names"]
                    .as_array()
                    .map(|a| a.iter().map(|v| s(v).to_string()).collect())
                    .unwrap_or_default();
                assert_eq!(got, want, "{name}");
            }
            "instruction-error" => {
                let ast = frontend::parse("Dockerfile", s(&case["dockerfile"]))
                    .unwrap_or_else(|e| panic!("{name}: must parse: {e}"));
                let err = validate_instruction("Dockerfile", &ast.instructions[0]).expect_err(name);
                let want = s(&expect["instruction_error_contains"]);
                assert!(err.message.contains(want), "{name}: {err}");
            }
            "copy-sources" => {
                let ast = frontend::parse("Dockerfile", s(&case["dockerfile"]))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let inst = &ast.instructions[0];
                validate_instruction("Dockerfile", inst).unwrap_or_else(|e| panic!("{name}: {e}"));
                let sd = sources_and_dest(inst).expect("sources and destination");
                assert_eq!(sd.dest.value, s(&expect["dest_path"]), "{name}");
                let paths: Vec<Value> = sd.paths.iter().map(|w| json!(w.value)).collect();
                let want_paths = expect["source_paths"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(paths, want_paths, "{name}");
                let contents: Vec<Value> = sd
                    .contents
                    .iter()
                    .map(|c| json!({"path": c.path, "data": c.data, "expand": c.expand}))
                    .collect();
                let want = expect["source_contents"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(contents, want, "{name}");
            }
            "run-command" => {
                let ast = frontend::parse("Dockerfile", s(&case["dockerfile"]))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let inst = &ast.instructions[0];
                let Args::Command { command } = &inst.args else {
                    panic!("{name}: not a command: {:?}", inst.args);
                };
                let (shell, line): (bool, Vec<String>) = match command {
                    Command::Exec(w) => (false, w.iter().map(|w| w.value.clone()).collect()),
                    Command::Shell(w) => (true, vec![w.value.clone()]),
                };
                assert_eq!(json!(shell), expect["prepend_shell"], "{name}");
                assert_eq!(json!(line), expect["cmd_line"], "{name}");
                let files: Vec<Value> = inst
                    .heredocs
                    .iter()
                    .map(|h| json!({"name": h.name, "data": h.content, "chomp": h.chomp}))
                    .collect();
                let want = expect["files"].as_array().cloned().unwrap_or_default();
                assert_eq!(files, want, "{name}");
            }
            "build-output" | "build-steps" => continue,
            other => panic!("{name}: unknown case kind {other}"),
        }
        *ran.entry(kind.to_string()).or_default() += 1;
    }
    let total: usize = ran.values().sum();
    assert_eq!(total, 48, "parse-level cases run: {ran:?}");
}
