//! Conformance: the parse-level and instruction-layer cases of
//! `shared/corpus/instructions/cases.json`.
//!
//! Run here: `instruction` (argument counts, unknown instructions and flags,
//! ONBUILD triggers), `bflags` (the flag value rules), `robustness`,
//! `stages` (doc comments), and the two `instruction-from-node` blank-name
//! cases (expressible as text). Left to lowering: `duration-flag`,
//! `json-args`, the `healthcheck-cmd-shell-form` node case, and the two
//! "too many arguments" node cases, which hand-build a node the parser can
//! never produce (ENV/LABEL pairs are always complete triples here).

mod parser_common;

use frontend::ast::{Args, Flag, Keyword, Span};
use frontend::syntax::flagspec::{FlagSpec, FlagType, parse_flags};
use frontend::syntax::validate_instruction;
use serde_json::{Value, json};

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn check_instruction(name: &str, dockerfile: &str, expect: &Value) {
    let ast = frontend::parse("Dockerfile", dockerfile)
        .unwrap_or_else(|e| panic!("{name}: the parser must accept it: {e}"));
    let inst = &ast.instructions[0];
    let got = validate_instruction("Dockerfile", inst);
    if let Some(exact) = expect.get("instruction_error").filter(|v| !v.is_null()) {
        let err = got.expect_err(name);
        assert_eq!(err.message, s(exact), "{name}");
    } else if let Some(part) = expect.get("instruction_error_contains") {
        let err = got.expect_err(name);
        assert!(err.message.contains(s(part)), "{name}: {err}");
    } else {
        got.unwrap_or_else(|e| panic!("{name}: must be accepted: {e}"));
    }
    if let Some(used) = expect.get("run_flags_used") {
        assert_eq!(inst.kind, Keyword::Run, "{name}");
        let names: Vec<&str> = inst.flags.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(json!(names), *used, "{name}");
    }
}

fn check_bflags(name: &str, case: &Value) {
    let specs: Vec<FlagSpec> = case["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| FlagSpec {
            name: Box::leak(s(&f["name"]).to_string().into_boxed_str()),
            ty: if s(&f["type"]) == "bool" {
                FlagType::Bool
            } else {
                FlagType::String
            },
            repeatable: false,
        })
        .collect();
    let default = |n: &str| {
        case["flags"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["name"] == json!(n)))
            .map(|f| f["default"].clone())
            .unwrap_or(Value::Null)
    };
    let args: Vec<Flag> = case["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(s)
        // A bare `--` only ends the flag list; the extractor drops it.
        .filter(|a| *a != "--")
        .map(|a| Flag::from_word(a, Span::default()))
        .collect();
    let expect = &case["expect"];
    let got = parse_flags(&specs, &args);
    if expect["error"] == json!(true) {
        assert!(got.is_err(), "{name}: expected an error, got {got:?}");
        return;
    }
    let values = got.unwrap_or_else(|e| panic!("{name}: {e:?}"));
    if let Some(map) = expect["values"].as_object() {
        for (flag, want) in map {
            let v = values.get(flag).map_or_else(|| default(flag), |v| json!(v));
            assert_eq!(v, *want, "{name}: value of {flag}");
        }
    }
    if let Some(map) = expect["is_true"].as_object() {
        for (flag, want) in map {
            let v = values
                .bool(flag)
                .map_or_else(|| default(flag), |b| json!(b));
            assert_eq!(v, *want, "{name}: is_true of {flag}");
        }
    }
    if let Some(map) = expect["used"].as_object() {
        for (flag, want) in map {
            assert_eq!(json!(values.is_used(flag)), *want, "{name}: used {flag}");
        }
    }
    if let Some(sorted) = expect.get("used_sorted") {
        assert_eq!(json!(values.used_sorted()), *sorted, "{name}");
    }
}

fn check_doc_comments(name: &str, case: &Value) {
    let ast = frontend::parse("Dockerfile", s(&case["dockerfile"]))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut meta = Vec::new();
    let mut stage_docs = serde_json::Map::new();
    let mut stage_args = Vec::new();
    let mut stage: Option<usize> = None;
    let mut command = 0;
    let mut meta_command = 0;
    for inst in &ast.instructions {
        match (&inst.args, inst.kind) {
            (Args::Words { words }, Keyword::From) => {
                let idx = stage.map_or(0, |i| i + 1);
                stage = Some(idx);
                command = 0;
                let stage_name = if words.len() == 3 {
                    words[2].value.as_str()
                } else {
                    ""
                };
                let doc = inst.doc_comment(stage_name);
                if !doc.is_empty() {
                    stage_docs.insert(idx.to_string(), json!(doc));
                }
                continue;
            }
            (Args::ArgDecls { decls }, _) => {
                for (i, d) in decls.iter().enumerate() {
                    let doc = inst.doc_comment(&d.name);
                    match stage {
                        None => meta.push(json!({"command": meta_command, "arg": i,
                                                 "key": d.name, "doc_comment": doc})),
                        Some(st) => stage_args.push(json!({"stage": st, "command": command,
                                    "arg": i, "key": d.name, "doc_comment": doc})),
                    }
                }
                if stage.is_none() {
                    meta_command += 1;
                }
            }
            _ => {}
        }
        if stage.is_some() {
            command += 1;
        }
    }
    let expect = &case["expect"];
    assert_eq!(
        Value::Object(stage_docs),
        expect["stage_doc_comments"],
        "{name}"
    );
    assert_eq!(json!(meta), expect["meta_args"], "{name}");
    assert_eq!(json!(stage_args), expect["stage_args"], "{name}");
}

#[test]
fn instruction_layer_cases() {
    let cases = parser_common::cases("instructions");
    let mut ran = 0;
    for case in &cases {
        let name = s(&case["name"]);
        match s(&case["kind"]) {
            "instruction" => check_instruction(name, s(&case["dockerfile"]), &case["expect"]),
            "bflags" => check_bflags(name, case),
            "robustness" => {
                for df in case["dockerfiles"].as_array().expect("dockerfiles") {
                    if let Ok(ast) = frontend::parse("Dockerfile", s(df)) {
                        for inst in &ast.instructions {
                            let _ = validate_instruction("Dockerfile", inst);
                        }
                    }
                }
            }
            "stages" => check_doc_comments(name, case),
            "instruction-from-node" if name.starts_with("blank-names/") => {
                let node = &case["node"];
                check_instruction(name, s(&node["original"]), &case["expect"]);
            }
            _ => continue,
        }
        ran += 1;
    }
    assert_eq!(ran, 19 + 14 + 1 + 1 + 2, "cases run");
}
