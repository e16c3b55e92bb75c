//! Property test: parse + lower never panics, whatever the text.

use frontend::{BuildOptions, EmptyResolver};
use proptest::prelude::*;

/// Dockerfile-shaped text: instruction keywords, flags and special
/// characters mixed with arbitrary ones.
fn dockerfileish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("FROM ".to_string()),
        Just("FROM scratch AS a\n".to_string()),
        Just("scratch".to_string()),
        Just(" AS ".to_string()),
        Just("ARG ".to_string()),
        Just("ENV ".to_string()),
        Just("RUN ".to_string()),
        Just("COPY ".to_string()),
        Just("ADD ".to_string()),
        Just("WORKDIR ".to_string()),
        Just("EXPOSE ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("SHELL ".to_string()),
        Just("CMD ".to_string()),
        Just("ENTRYPOINT ".to_string()),
        Just("--from=".to_string()),
        Just("--mount=".to_string()),
        Just("type=cache,target=".to_string()),
        Just("--chmod=".to_string()),
        Just("--interval=".to_string()),
        Just("<<EOF".to_string()),
        Just("EOF".to_string()),
        Just("${A:-b}".to_string()),
        Just("$A".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("=".to_string()),
        Just("\n".to_string()),
        Just("\\\n".to_string()),
        Just(" ".to_string()),
        Just("0".to_string()),
        "[a-z/.:-]{1,6}".prop_map(|s| s),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn parse_and_lower_never_panic(text in dockerfileish(), target in proptest::option::of("[a-z0-9]{1,3}")) {
        let opts = BuildOptions { target, ..Default::default() };
        if let Ok(df) = frontend::parse("Dockerfile", &text) {
            let _ = frontend::lower(&df, &opts, &EmptyResolver);
        }
    }
}
