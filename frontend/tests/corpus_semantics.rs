//! Conformance of lowering against the shared corpus: the conversion-level
//! cases of `semantic-errors`, the parse-time `RUN --mount` cases of
//! `runmount`, and every real-world Dockerfile (see each PROVENANCE.md).

mod semantics_support;

use std::collections::BTreeMap;

use frontend::{BuildGraph, BuildOptions, Diagnostic, EmptyResolver, ImageConfig};
use semantics_support::{corpus_dir, json};
use serde_json::Value;

fn lower_text(text: &str, opts: &BuildOptions) -> Result<BuildGraph, Diagnostic> {
    let df = frontend::parse("Dockerfile", text)?;
    frontend::lower(&df, opts, &EmptyResolver)
}

fn options(case: &Value) -> BuildOptions {
    let mut opts = BuildOptions::default();
    let bo = case.get("build_opts");
    if let Some(t) = bo.and_then(|b| b.get("target")).and_then(Value::as_str) {
        opts.target = Some(t.to_string());
    }
    if let Some(args) = bo
        .and_then(|b| b.get("build_args"))
        .and_then(Value::as_object)
    {
        for (k, v) in args {
            opts.build_args
                .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    opts
}

fn target_config(g: &BuildGraph) -> &ImageConfig {
    &g.target_stage().expect("target stage").config
}

#[test]
fn semantic_errors_convert_cases() {
    let cases = json("semantic-errors/cases.json");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases.as_array().expect("array") {
        if case["kind"] != "convert" {
            continue;
        }
        checked += 1;
        let name = case["name"].as_str().unwrap_or("?");
        let text = case["dockerfile"].as_str().expect("dockerfile");
        let got = lower_text(text, &options(case));
        let expect = &case["expect"];
        match (&expect["error"], &got) {
            (Value::Bool(false), Ok(g)) => {
                if let Some(labels) = expect.get("image_labels").and_then(Value::as_object) {
                    for (k, v) in labels {
                        let have = target_config(g).labels.get(k).map(String::as_str);
                        if have != v.as_str() {
                            failures.push(format!("{name}: label {k} is {have:?}, want {v}"));
                        }
                    }
                }
            }
            (Value::Bool(false), Err(e)) => failures.push(format!("{name}: unexpected error {e}")),
            (Value::Bool(true), Err(_)) => {}
            (Value::String(msg), Err(e)) => {
                if e.message != *msg {
                    failures.push(format!("{name}: message {:?}, want {msg:?}", e.message));
                }
            }
            (_, Ok(_)) => failures.push(format!("{name}: expected an error, lowering succeeded")),
            (other, _) => failures.push(format!("{name}: unknown expectation {other}")),
        }
    }
    assert!(checked >= 10, "only {checked} convert cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The integration cases whose failure BuildKit reports before running
/// anything: lowering must reject them with the listed texts.
#[test]
fn semantic_errors_build_time_rejections_without_a_build() {
    let cases = json("semantic-errors/cases.json");
    let frontend_cases = [
        "target-mistyped",
        "copy-from-later-stage//",
        "copy-from-later-stage//d2",
        "no-stages",
        "copy-from-variable",
        "copy-chmod-invalid/64a",
        "copy-chmod-invalid/10000",
        "add-chmod-invalid/64a",
        "add-chmod-invalid/10000",
        "unknown-instruction-suggestion",
        "source-date-epoch/invalid-default",
        "source-date-epoch/stage-invalid",
    ];
    let mut failures = Vec::new();
    for name in frontend_cases {
        let case = cases
            .as_array()
            .expect("array")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("case {name} missing from the corpus"));
        let text = case["dockerfile"].as_str().expect("dockerfile");
        match lower_text(text, &options(case)) {
            Ok(_) => failures.push(format!("{name}: lowering succeeded")),
            Err(e) => {
                let full = format!("{} {}", e.message, e.hint.clone().unwrap_or_default());
                for needle in case["expect"]["build_error_contains"]
                    .as_array()
                    .expect("build_error_contains")
                {
                    let needle = needle.as_str().expect("string");
                    if !full.contains(needle) {
                        failures.push(format!("{name}: {full:?} lacks {needle:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn semantic_errors_expose_cases() {
    let cases = json("semantic-errors/cases.json");
    let mut failures = Vec::new();
    for case in cases.as_array().expect("array") {
        let kind = case["kind"].as_str().unwrap_or("");
        let specs: Vec<String> = match kind {
            "expose-port" => vec![case["input"].as_str().expect("input").to_string()],
            "expose-ports" => case["input"]
                .as_array()
                .expect("input list")
                .iter()
                .map(|v| v.as_str().expect("spec").to_string())
                .collect(),
            _ => continue,
        };
        let name = case["name"].as_str().unwrap_or("?");
        let mut got: Result<Vec<String>, String> = Ok(Vec::new());
        for spec in &specs {
            match frontend::parse_port_spec(spec) {
                Ok(ports) => {
                    if let Ok(all) = &mut got {
                        all.extend(ports);
                    }
                }
                Err(e) => {
                    got = Err(e);
                    break;
                }
            }
        }
        let expect = &case["expect"];
        match (&expect["error"], got) {
            (Value::Null, Ok(have)) => {
                let want: Vec<String> = expect["ports"]
                    .as_array()
                    .expect("ports")
                    .iter()
                    .map(|p| p.as_str().expect("port").to_string())
                    .collect();
                if have != want {
                    failures.push(format!("{name}: ports {have:?}, want {want:?}"));
                }
            }
            (Value::Null, Err(e)) => failures.push(format!("{name}: unexpected error {e}")),
            (Value::Bool(true), Err(_)) => {}
            (Value::String(msg), Err(e)) => {
                if e != *msg {
                    failures.push(format!("{name}: {e:?}, want {msg:?}"));
                }
            }
            (_, Ok(_)) => failures.push(format!("{name}: expected an error")),
            (other, Err(e)) => failures.push(format!("{name}: {other} vs {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// EXPOSE through the whole pipeline: expansion, ranges, protocols.
#[test]
fn expose_in_a_dockerfile() {
    let g = lower_text(
        "FROM scratch\nARG P=8080\nEXPOSE 80 ${P}/udp 1000-1002/tcp\n",
        &BuildOptions::default(),
    )
    .expect("lowers");
    let ports: Vec<&String> = target_config(&g).exposed_ports.keys().collect();
    assert_eq!(
        ports,
        ["1000/tcp", "1001/tcp", "1002/tcp", "80/tcp", "8080/udp"]
    );
    let last = &g
        .target_stage()
        .expect("target")
        .history
        .last()
        .expect("entry")
        .created_by;
    assert_eq!(last, "EXPOSE 80 8080/udp 1000-1002/tcp");
}

#[test]
fn semantic_errors_history_case() {
    let cases = json("semantic-errors/cases.json");
    let case = cases
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["kind"] == "history")
        .expect("history case");
    let hc = &case["healthcheck"];
    let test: Vec<String> = hc["test"]
        .as_array()
        .expect("test")
        .iter()
        .map(|s| s.as_str().expect("s").to_string())
        .collect();
    let text = format!(
        "FROM scratch\nHEALTHCHECK --interval={} --timeout={} --start-period={} --start-interval={} --retries={} CMD {}\n",
        hc["interval"].as_str().expect("interval"),
        hc["timeout"].as_str().expect("timeout"),
        hc["start_period"].as_str().expect("start_period"),
        hc["start_interval"].as_str().expect("start_interval"),
        hc["retries"],
        serde_json::to_string(&test).expect("json"),
    );
    let g = lower_text(&text, &BuildOptions::default()).expect("lowers");
    let stage = g.target_stage().expect("target");
    // The corpus gives the typed Test list (without the CMD marker the
    // Dockerfile form adds); the durations and retries come from the flags.
    let mut hc = stage.config.healthcheck.clone().expect("healthcheck set");
    assert_eq!(hc.test[0], "CMD");
    assert_eq!(hc.test[1..], test[..]);
    hc.test = test;
    let want = case["expect"]["created_by"].as_str().expect("created_by");
    assert_eq!(format!("HEALTHCHECK {}", hc.history_text()), want);
    let last = stage.history.last().expect("history entry");
    assert!(last.empty_layer);
    assert!(
        last.created_by
            .starts_with("HEALTHCHECK {Test:[CMD bin -c exit 0] Interval:1s")
    );
}

#[test]
fn proxy_env_cases() {
    let cases = json("semantic-errors/cases.json");
    let mut n = 0;
    for case in cases.as_array().expect("array") {
        if case["kind"] != "proxy-env" {
            continue;
        }
        n += 1;
        let mut opts = BuildOptions::default();
        for (k, v) in case["build_args"].as_object().expect("build_args") {
            opts.build_args
                .insert(k.clone(), v.as_str().expect("value").to_string());
        }
        let g = lower_text("FROM scratch\nRUN true\n", &opts).expect("lowers");
        let step = &g.target_stage().expect("target").steps[0];
        let frontend::Op::Exec(exec) = &step.op else {
            panic!("RUN is not an exec step");
        };
        let got: BTreeMap<String, String> = exec.proxy_env.iter().cloned().collect();
        let expect = &case["expect"]["proxy_env"];
        if expect.is_null() {
            assert!(got.is_empty(), "{}: {got:?}", case["name"]);
        } else {
            for (k, v) in expect.as_object().expect("object") {
                let v = v.as_str().expect("value");
                assert_eq!(got.get(k).map(String::as_str).unwrap_or(""), v, "{k}");
            }
            // Proxy values never reach the history.
            assert!(!step.created_by.contains("proxy"), "{}", step.created_by);
        }
    }
    assert_eq!(n, 2);
}

#[test]
fn runmount_parse_time_cases() {
    let cases = json("runmount/cases.json");
    let mut failures = Vec::new();
    for case in cases.as_array().expect("array") {
        let name = case["name"].as_str().unwrap_or("?");
        let Some(text) = case.get("dockerfile").and_then(Value::as_str) else {
            continue;
        };
        let frontend_error = [
            "error/unknown-flag-mont",
            "error/unknown-key-typ",
            "error/unknown-type-tmp",
            "error/from-variable-expansion",
        ]
        .contains(&name);
        let mut opts = options(case);
        if opts.target.is_none() {
            opts.target = None;
        }
        let got = lower_text(text, &opts);
        if frontend_error {
            match got {
                Ok(_) => failures.push(format!("{name}: accepted")),
                Err(e) => {
                    let full = format!("{} {}", e.message, e.hint.clone().unwrap_or_default());
                    for needle in case["expect"]["build_error_contains"]
                        .as_array()
                        .expect("contains")
                    {
                        let needle = needle.as_str().expect("s");
                        if !full.contains(needle) {
                            failures.push(format!("{name}: {full:?} lacks {needle:?}"));
                        }
                    }
                }
            }
        } else if case["kind"] != "build-error" {
            // Every other case must at least parse and lower (its mounts
            // accepted); run-time failures are the builder's business.
            if let Err(e) = &got {
                failures.push(format!("{name}: rejected: {e}"));
            }
        }
        if !frontend_error && case["kind"] != "build-error" {
            for opt in case["mount_options"].as_array().into_iter().flatten() {
                let opt = opt.as_str().expect("option");
                if opt.contains('$') {
                    // Needs the Dockerfile's variables: covered by lowering
                    // the whole file above.
                    continue;
                }
                let mut expand = |w: &str| -> Result<String, String> { Ok(w.to_string()) };
                if let Err(e) = frontend::runmount::parse_mount(opt, &mut expand, "/") {
                    failures.push(format!("{name}: mount {opt:?} rejected: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn real_world_dockerfiles_parse_and_lower() {
    let dir = corpus_dir().join("real-world");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("real-world dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
        .collect();
    entries.sort();
    assert!(
        entries.len() > 200,
        "only {} real-world files",
        entries.len()
    );
    let mut failures = Vec::new();
    for path in &entries {
        let text = std::fs::read_to_string(path).expect("read");
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match frontend::parse(&name, &text) {
            Err(e) => failures.push(format!("parse {e}")),
            Ok(df) => match frontend::lower(&df, &BuildOptions::default(), &EmptyResolver) {
                Err(e) => failures.push(format!("lower {e}")),
                Ok(g) => {
                    if g.stages.is_empty() {
                        failures.push(format!("{name}: no stages"));
                    }
                }
            },
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `instructions/cases.json` kind `duration-flag`: HEALTHCHECK duration
/// limits, through a whole Dockerfile.
#[test]
fn healthcheck_duration_flag_cases() {
    let cases = json("instructions/cases.json");
    let mut n = 0;
    for case in cases.as_array().expect("array") {
        if case["kind"] != "duration-flag" {
            continue;
        }
        n += 1;
        let name = case["name"].as_str().unwrap_or("?");
        let text = format!(
            "FROM scratch\nHEALTHCHECK --{}={} CMD true\n",
            case["flag"].as_str().expect("flag"),
            case["input"].as_str().expect("input")
        );
        let got = lower_text(&text, &BuildOptions::default());
        match (case["expect"]["error_contains"].as_str(), got) {
            (None, Ok(_)) => {}
            (None, Err(e)) => panic!("{name}: unexpected error {e}"),
            (Some(needle), Err(e)) => assert!(e.message.contains(needle), "{name}: {e}"),
            (Some(_), Ok(_)) => panic!("{name}: accepted"),
        }
    }
    assert_eq!(n, 3);
}

/// `runmount/cases.json` kind `device-option`: `RUN --device` values.
#[test]
fn runmount_device_option_cases() {
    let cases = json("runmount/cases.json");
    let mut n = 0;
    for case in cases.as_array().expect("array") {
        if case["kind"] != "device-option" {
            continue;
        }
        n += 1;
        let name = case["name"].as_str().unwrap_or("?");
        let got = frontend::runmount::parse_device(case["input"].as_str().expect("input"));
        let expect = &case["expect"];
        match (expect["error"].as_str(), got) {
            (Some(msg), Err(e)) => assert_eq!(e, msg, "{name}"),
            (Some(_), Ok(d)) => panic!("{name}: accepted as {d:?}"),
            (None, Err(e)) => panic!("{name}: {e}"),
            (None, Ok(d)) => {
                assert_eq!(d.name, expect["name"].as_str().expect("name"), "{name}");
                assert_eq!(Some(d.required), expect["required"].as_bool(), "{name}");
            }
        }
    }
    assert_eq!(n, 8);
    // In a Dockerfile the flag is recognised, validated, and refused
    // clearly rather than ignored.
    let e = lower_text(
        "FROM scratch\nRUN --device=vendor1.com/device=foo true\n",
        &BuildOptions::default(),
    )
    .expect_err("devices are not supported");
    assert!(e.message.contains("--device is not supported"), "{e}");
}

/// `semantic-errors` kind `source-date-epoch`: how the value is resolved.
#[test]
fn source_date_epoch_cases() {
    let cases = json("semantic-errors/cases.json");
    let mut n = 0;
    for case in cases.as_array().expect("array") {
        if case["kind"] != "source-date-epoch" {
            continue;
        }
        n += 1;
        let name = case["name"].as_str().unwrap_or("?");
        let input = case["input"].as_str().unwrap_or("mysource");
        let text = case["dockerfile"]
            .as_str()
            .unwrap_or("FROM scratch\n")
            .to_string();
        let mut opts = options(case);
        opts.build_args
            .insert("SOURCE_DATE_EPOCH".into(), input.to_string());
        let got = lower_text(&text, &opts);
        let expect = &case["expect"];
        if let Some(needle) = expect["error_contains"].as_str() {
            let e = got.expect_err(name);
            assert!(e.message.contains(needle), "{name}: {e}");
            continue;
        }
        let g = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let epoch = g.source_date_epoch.clone().expect("epoch resolved");
        match (&expect["time_utc"], &expect["source"]) {
            (Value::String(_), _) => {
                let want: i64 = expect["formatted"]
                    .as_str()
                    .expect("formatted")
                    .parse()
                    .expect("seconds");
                assert_eq!(
                    epoch,
                    frontend::SourceDateEpoch::Seconds { seconds: want },
                    "{name}"
                );
            }
            (Value::Null, Value::Object(src)) => {
                let frontend::SourceDateEpoch::Stage { sources, .. } = epoch else {
                    panic!("{name}: {epoch:?}");
                };
                assert_eq!(sources.len(), 1, "{name}");
                assert_eq!(
                    frontend::http_filename(&sources[0]),
                    src["http.filename"].as_str().expect("filename"),
                    "{name}"
                );
            }
            (Value::Null, _) => {
                assert_eq!(epoch, frontend::SourceDateEpoch::Context, "{name}");
            }
            (other, _) => panic!("{name}: unexpected {other}"),
        }
    }
    assert_eq!(n, 6);
}
