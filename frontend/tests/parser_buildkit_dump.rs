//! Conformance: `dump(parse(Dockerfile))` equals BuildKit's `result` byte for
//! byte for every case in `shared/corpus/buildkit-parser/`, and the line
//! ranges of `buildkit-parser-lines` match.

mod parser_common;

use frontend::dump::dump;
use parser_common::corpus;

#[test]
fn every_buildkit_parser_case_dumps_identically() {
    let dir = corpus("buildkit-parser");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 17,
        "expected at least 17 cases, found {}",
        names.len()
    );
    let mut failures = Vec::new();
    for name in &names {
        let case = dir.join(name);
        let input = std::fs::read(case.join("Dockerfile")).expect("read Dockerfile");
        let input = String::from_utf8_lossy(&input);
        let expected = std::fs::read_to_string(case.join("result")).expect("read result");
        match frontend::parse(name, &input) {
            Ok(ast) => {
                let got = dump(&ast);
                if got != expected {
                    failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: parse failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn instruction_line_ranges_match_buildkit() {
    let dir = corpus("buildkit-parser-lines").join("testfile-line");
    let text = std::fs::read_to_string(dir.join("Dockerfile")).expect("read Dockerfile");
    let tsv = std::fs::read_to_string(dir.join("expected-lines.tsv")).expect("read tsv");
    let ast = frontend::parse("Dockerfile", &text).expect("parses");
    let mut checked = 0;
    for row in tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = row.split('\t').collect();
        let [what, start, end] = cols[..] else {
            panic!("bad row {row:?}");
        };
        let start: usize = start.parse().expect("start line");
        let end: usize = end.parse().expect("end line");
        let span = if what == "root" {
            ast.span
        } else {
            let i: usize = what
                .trim_start_matches("child")
                .parse()
                .expect("child index");
            ast.instructions[i].span
        };
        assert_eq!((span.line, span.end_line), (start, end), "{what}");
        checked += 1;
    }
    assert_eq!(checked, 4, "root and three children");
    assert_eq!(ast.instructions.len(), 3);
}
