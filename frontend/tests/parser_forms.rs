//! Unit tests for the forms the parser must handle: directives, line
//! joining, exec/shell forms, ENV/LABEL/ARG, flags, heredocs, ONBUILD,
//! positions, and the errors a user sees.

use frontend::ast::{Args, Command, Dockerfile, Instruction, Keyword};
use frontend::dump::dump;
use frontend::syntax::validate;

fn parse(text: &str) -> Dockerfile {
    frontend::parse("Dockerfile", text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> frontend::Diagnostic {
    frontend::parse("Dockerfile", text).expect_err("must fail")
}

fn invalid(text: &str) -> frontend::Diagnostic {
    validate(&parse(text)).expect_err("validation must fail")
}

fn shell(inst: &Instruction) -> &str {
    match &inst.args {
        Args::Command {
            command: Command::Shell(w),
        } => &w.value,
        other => panic!("not shell form: {other:?}"),
    }
}

#[test]
fn directives_at_the_top_set_escape_and_are_recorded() {
    let ast = parse("# syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM a\nRUN echo `\n  hi\n");
    assert_eq!(ast.escape, '`');
    assert_eq!(ast.directive("syntax"), Some("docker/dockerfile:1"));
    assert_eq!(ast.directive("escape"), Some("`"));
    assert_eq!(ast.directives[1].span.line, 2);
    assert_eq!(shell(&ast.instructions[1]), "echo   hi");
}

#[test]
fn directives_end_at_a_comment_or_blank_line() {
    for text in [
        "# hello\n# escape=`\nFROM a\n",
        "\n# escape=`\nFROM a\n",
        "FROM a\n# escape=`\n",
    ] {
        let ast = parse(text);
        assert_eq!(ast.escape, '\\', "{text:?}");
        assert!(ast.directives.is_empty(), "{text:?}");
    }
    // An unknown key ends them too.
    assert_eq!(parse("# foo=bar\n# escape=`\nFROM a").escape, '\\');
}

#[test]
fn bad_directives_are_errors_with_positions() {
    let e = err("# escape=x\nFROM a\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.contains("invalid escape token 'x'"), "{e}");
    assert!(e.hint.is_some());
    let e = err("# syntax=a\n# Syntax=b\nFROM a\n");
    assert_eq!(e.line, 2);
    assert_eq!(e.message, "only one syntax parser directive can be used");
}

#[test]
fn continuations_skip_comments_and_blank_lines_and_end_at_eof() {
    let ast = parse("FROM a\nRUN a \\\n# comment\n\n   b \\  \n\tc\\\n");
    let run = &ast.instructions[1];
    assert_eq!(shell(run), "a    b \tc");
    assert_eq!((run.span.line, run.span.end_line), (2, 6));
    assert_eq!(ast.warnings.len(), 1, "empty continuation line warns");
    assert!(
        ast.warnings[0]
            .message
            .starts_with("Empty continuation line")
    );
}

#[test]
fn crlf_line_endings() {
    let ast = parse("FROM a\r\nRUN a \\\r\n b\r\nCOPY <<EOF /x\r\nhi\r\nEOF\r\n");
    assert_eq!(shell(&ast.instructions[1]), "a  b");
    assert_eq!(ast.instructions[2].heredocs[0].content, "hi\r\n");
}

#[test]
fn keywords_are_case_insensitive_and_keep_their_spelling() {
    let ast = parse("from a\nRuN echo\n");
    assert_eq!(ast.instructions[1].kind, Keyword::Run);
    assert_eq!(ast.instructions[1].keyword, "RuN");
    assert_eq!(ast.instructions[1].name, "run");
}

#[test]
fn exec_form_shell_form_and_invalid_json_fallback() {
    let ast = parse("FROM a\nCMD [\"a\", \"b c\"]\nCMD ['a']\nCMD [\"a\"\nENTRYPOINT []\n");
    assert!(ast.instructions[1].is_json());
    assert_eq!(shell(&ast.instructions[2]), "['a']");
    assert_eq!(shell(&ast.instructions[3]), "[\"a\"");
    assert_eq!(dump(&ast).lines().nth(4), Some("(entrypoint)"));
    let e = err("FROM a\nRUN [\"a\", 1]\n");
    assert_eq!(e.line, 2);
    assert!(
        e.message
            .contains("arrays must be comprised of strings only")
    );
}

#[test]
fn env_label_arg_forms() {
    let ast = parse(
        "FROM a\nENV A 1 2\nENV B=\"x y\" C=z\\ w\nLABEL \"k 1\"=v\nARG X\nARG Y=1 Z=\"2 3\"\n",
    );
    let pairs = |i: usize| match &ast.instructions[i].args {
        Args::KeyValues { pairs } => pairs
            .iter()
            .map(|p| (p.key.value.clone(), p.value.value.clone(), p.equals))
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(pairs(1), vec![("A".into(), "1 2".into(), false)]);
    assert_eq!(
        pairs(2),
        vec![
            ("B".into(), "\"x y\"".into(), true),
            ("C".into(), "z\\ w".into(), true)
        ]
    );
    assert_eq!(pairs(3), vec![("\"k 1\"".into(), "v".into(), true)]);
    let Args::ArgDecls { decls } = &ast.instructions[5].args else {
        panic!("ARG");
    };
    let got: Vec<_> = decls
        .iter()
        .map(|d| (d.name.as_str(), d.default.as_deref()))
        .collect();
    assert_eq!(got, vec![("Y", Some("1")), ("Z", Some("\"2 3\""))]);
    assert!(
        err("FROM a\nENV A\n")
            .message
            .contains("ENV must have two arguments")
    );
    assert!(
        err("FROM a\nENV A=1 B\n")
            .message
            .contains("can't find = in \"B\"")
    );
}

#[test]
fn flags_are_recorded_with_values_and_positions() {
    let ast = parse("FROM a\nCOPY --from=b --link --exclude=x --exclude=y -- --weird /d\n");
    let copy = &ast.instructions[1];
    let names: Vec<_> = copy
        .flags
        .iter()
        .map(|f| (f.name.as_str(), f.value.as_deref()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("from", Some("b")),
            ("link", None),
            ("exclude", Some("x")),
            ("exclude", Some("y"))
        ]
    );
    assert_eq!(copy.flag_values("exclude"), vec!["x", "y"]);
    assert_eq!(
        (copy.flags[1].span.line, copy.flags[1].span.column),
        (2, 15)
    );
    assert_eq!(copy.args_text.value, "--weird /d");
    validate(&ast).expect("valid COPY flags");
}

#[test]
fn flag_and_instruction_errors_say_what_to_do() {
    let e = invalid("FROM a\nCOPY --mount=type=cache x y\n");
    assert!(e.message.starts_with("unknown flag: --mount"), "{e}");
    assert!(e.message.contains("not allowed on COPY"), "{e}");
    assert_eq!((e.line, e.column), (2, 6));
    let e = invalid("FROM a\nRUN --bogus x\n");
    assert_eq!(e.message, "unknown flag: --bogus");
    assert!(e.hint.as_deref().unwrap_or_default().contains("--mount"));
    let e = invalid("FORM a\n");
    assert_eq!(e.message, "unknown instruction: FORM");
    assert_eq!(e.hint.as_deref(), Some("did you mean FROM?"));
    let e = invalid("FROM a\nCOPY --from x y\n");
    assert_eq!(e.message, "Missing a value on flag: --from");
    let e = invalid("FROM a\nONBUILD ONBUILD RUN x\n");
    assert!(e.message.contains("Chaining ONBUILD"));
}

#[test]
fn empty_files_are_errors() {
    for text in ["", "\n\n", "# just a comment\n", "# syntax=x\n"] {
        let e = err(text);
        assert_eq!(
            e.message, "the Dockerfile is empty: add a FROM line",
            "{text:?}"
        );
    }
}

#[test]
fn heredoc_forms() {
    let text = "FROM a\n\
RUN <<EOF\necho hi\nEOF\n\
RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n\
RUN <<-EOF\n\techo tab\n\tEOF\n\
COPY <<'EOF' <<\"E2\" /dst/\n$NOT\nEOF\ntwo\nE2\n\
RUN 3<<IN cat <&3\nx\nIN\n";
    let ast = parse(text);
    let h = |i: usize| &ast.instructions[i].heredocs;
    assert_eq!(h(1)[0].content, "echo hi\n");
    assert!(h(1)[0].expand && !h(1)[0].chomp);
    assert_eq!(h(2)[0].content, "#!/usr/bin/env python3\nprint(1)\n");
    assert!(h(3)[0].chomp);
    assert_eq!(h(3)[0].content, "\techo tab\n");
    assert_eq!(h(3)[0].chomped(), "echo tab\n");
    assert_eq!((h(4)[0].name.as_str(), h(4)[0].expand), ("EOF", false));
    assert_eq!(
        (h(4)[1].name.as_str(), h(4)[1].content.as_str()),
        ("E2", "two\n")
    );
    assert_eq!(h(5)[0].file_descriptor, 3);
    // Positions: the marker word and the body.
    assert_eq!((h(1)[0].span.line, h(1)[0].span.column), (2, 5));
    assert_eq!((h(1)[0].body_span.line, h(1)[0].body_span.end_line), (3, 4));
    assert_eq!(
        (
            ast.instructions[4].span.line,
            ast.instructions[4].span.end_line
        ),
        (12, 16)
    );
    // Heredoc bodies are not instructions.
    assert_eq!(dump(&ast).lines().count(), 6);
}

#[test]
fn heredocs_only_for_run_copy_add_and_not_in_json_form() {
    let ast = parse("FROM a\nUSER <<X\nX\nRUN [\"<<EOF\"]\n");
    assert_eq!(ast.instructions.len(), 4);
    assert!(ast.instructions.iter().all(|i| i.heredocs.is_empty()));
}

#[test]
fn onbuild_nests_and_its_trigger_keeps_heredocs() {
    let ast = parse("FROM a\nONBUILD RUN <<EOF\ntouch /x\nEOF\nONBUILD --x COPY a b\n");
    let Args::Onbuild { trigger } = &ast.instructions[1].args else {
        panic!("ONBUILD");
    };
    assert_eq!(trigger.kind, Keyword::Run);
    assert_eq!(trigger.heredocs[0].content, "touch /x\n");
    assert_eq!(
        (trigger.keyword_span.line, trigger.keyword_span.column),
        (2, 9)
    );
    assert_eq!(ast.instructions[1].heredocs.len(), 1);
    assert_eq!(
        dump(&ast).lines().nth(2),
        Some("(onbuild [\"--x\"] (copy \"a\" \"b\"))")
    );
}

#[test]
fn unterminated_heredoc_points_at_the_marker() {
    let e = err("FROM a\nRUN echo && cat <<END\nline\n");
    assert_eq!(e.message, "unterminated heredoc");
    assert_eq!((e.line, e.column), (2, 17));
    assert!(e.hint.as_deref().unwrap_or_default().contains("END"));
}

#[test]
fn spans_map_through_continuations() {
    let text = "FROM a\nCOPY x \\\n     y /z\n";
    let ast = parse(text);
    let Args::List { items, .. } = &ast.instructions[1].args else {
        panic!("COPY");
    };
    let y = &items[1];
    assert_eq!((y.span.line, y.span.column), (3, 6));
    assert_eq!(&text[y.span.byte_start..y.span.byte_end], "y");
    let args = &ast.instructions[1].args_text;
    assert_eq!((args.span.line, args.span.end_line), (2, 3));
    assert_eq!(ast.instructions[1].original, "COPY x      y /z");
}

#[test]
fn syntax_level_dump_accepts_semantically_wrong_lines() {
    let ast = parse("FROM a\nHEALTHCHECK CONNECT TCP 7000\nFOO bar\n");
    assert_eq!(
        dump(&ast),
        "(from \"a\")\n(healthcheck \"CONNECT\" \"TCP 7000\")\n(foo \"\")\n"
    );
    assert!(validate(&ast).is_err());
}

#[test]
fn byte_order_mark_is_ignored() {
    let ast = parse("\u{feff}# escape=`\nFROM a\n");
    assert_eq!(ast.escape, '`');
    assert_eq!(
        ast.instructions[0].span.byte_start,
        "\u{feff}# escape=`\n".len()
    );
}

#[test]
fn keywords_lower_case_like_go() {
    // U+212A KELVIN SIGN lower-cases to an ASCII `k` in Go, so BuildKit
    // dispatches this as WORKDIR; the dump prints Go's lower-casing.
    let ast = parse("FROM a\nWOR\u{212a}DIR /x\nF\u{130}X y\n");
    assert_eq!(ast.instructions[1].kind, Keyword::Workdir);
    assert_eq!(ast.instructions[1].name, "workdir");
    assert_eq!(ast.instructions[2].name, "fix");
}
