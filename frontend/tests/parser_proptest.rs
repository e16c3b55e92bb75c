//! Property: no input panics the parser, the instruction layer or the dump,
//! and every span the parser produces lies inside the text.

use proptest::prelude::*;

/// Pieces that exercise the parser's special cases when glued together.
const TOKENS: &[&str] = &[
    "FROM",
    "from",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "LABEL",
    "ARG",
    "ONBUILD",
    "HEALTHCHECK",
    "CMD",
    "SHELL",
    "USER",
    "EXPOSE",
    "VOLUME",
    "MAINTAINER",
    "FOO",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\\",
    "\\\n",
    "`",
    "`\n",
    "\\ \n",
    "#",
    "# escape=`\n",
    "# escape=\\\n",
    "# syntax=x\n",
    "# check=skip=all\n",
    "--",
    "--from=a",
    "--mount=type=cache,target=/x",
    "--link",
    "--chown=\"a b\"",
    "--",
    "=",
    "a=b",
    "\"",
    "'",
    "\"a b\"",
    "'c d'",
    "[",
    "]",
    "[\"a\", \"b\"]",
    "[1]",
    "[\"\\u0000\"]",
    ",",
    "<<",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "<<\"EOF\"",
    "3<<EOF",
    "<< EOF",
    "EOF",
    "\tEOF",
    "EOF\n",
    "$",
    "${",
    "}",
    "NONE",
    "CMD",
    "\u{feff}",
    "\u{a0}",
    "♥",
    "é",
    "\u{85}",
    "\u{2028}",
    "\0",
    "\x0b",
    "\x0c",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|t| t.concat())
}

fn check(text: &str) {
    let Ok(ast) = frontend::parse("prop", text) else {
        return;
    };
    assert!(!ast.instructions.is_empty());
    let _ = frontend::syntax::validate(&ast);
    let dump = frontend::dump::dump(&ast);
    assert_eq!(dump.matches('\n').count(), ast.instructions.len());
    serde_json::to_string(&ast).expect("the tree serialises");
    for inst in &ast.instructions {
        for span in [inst.span, inst.keyword_span, inst.args_text.span] {
            assert!(span.byte_start <= span.byte_end && span.byte_end <= text.len());
            assert!(text.is_char_boundary(span.byte_start) && text.is_char_boundary(span.byte_end));
            assert!(span.line >= 1 && span.column >= 1 && span.end_line >= span.line);
        }
        for h in &inst.heredocs {
            assert!(h.body_span.byte_end <= text.len());
        }
        let _ = frontend::syntax::sources::sources_and_dest(inst);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn dockerfile_token_soup_never_panics(text in token_soup()) {
        check(&text);
    }

    #[test]
    fn soup_after_a_valid_prefix_never_panics(text in token_soup()) {
        check(&format!("FROM scratch\n{text}"));
    }
}
