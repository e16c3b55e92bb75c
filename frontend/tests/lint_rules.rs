//! BuildKit's build checks (`strata check`, `docker build --check`): one
//! Dockerfile breaks each of the 22 rules exactly once and gets exactly
//! those findings, names as BuildKit spells them, at the right lines; the
//! `check` directive's skip / error / experimental options are honoured.

use std::collections::BTreeMap;

use frontend::lint::{Facts, Finding, Rule};
use frontend::{BuildOptions, ImageConfig, ImageResolver, Platform, ResolvedImage};

const ALL_RULES: &str = include_str!("../../testdata/lint/all-rules.Dockerfile");

/// Every image resolves (with a digest, so its config counts as known);
/// `armonly` reports a platform other than the one asked for.
struct FakeResolver;

impl ImageResolver for FakeResolver {
    fn resolve(&self, _reference: &str, _platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            digest: format!("sha256:{}", "a".repeat(64)),
            config: ImageConfig {
                env: vec!["PATH=/usr/bin:/bin".into()],
                ..Default::default()
            },
        })
    }

    fn resolved_platform(&self, reference: &str, _platform: &Platform) -> Option<Platform> {
        (reference == "armonly").then(|| Platform {
            os: "windows".into(),
            architecture: "amd64".into(),
            variant: None,
        })
    }
}

fn opts() -> BuildOptions {
    BuildOptions {
        build_args: BTreeMap::from([("IMG".to_string(), "busybox".to_string())]),
        platform: "linux/amd64".parse().unwrap(),
        ..Default::default()
    }
}

fn check(text: &str) -> frontend::lint::CheckReport {
    let df = frontend::parse("Dockerfile", text).expect("parses");
    let ignored = |p: &str| p == "secret.txt";
    let facts = Facts {
        ignored: Some(&ignored),
    };
    frontend::check(&df, &opts(), &FakeResolver, &facts).expect("checks")
}

fn names_and_lines(findings: &[Finding]) -> Vec<(&'static str, usize)> {
    findings.iter().map(|f| (f.rule.name(), f.line)).collect()
}

#[test]
fn every_rule_found_exactly_once_at_its_line() {
    let report = check(ALL_RULES);
    let got: Vec<(&str, usize, &str)> = report
        .findings
        .iter()
        .map(|f| (f.rule.name(), f.line, f.message.as_str()))
        .collect();
    let expected: Vec<(&str, usize, &str)> = vec![
        (
            "StageNameCasing",
            10,
            "Stage name 'Builder' should be lowercase",
        ),
        (
            "WorkdirRelativePath",
            11,
            "Relative workdir \"app\" can have unexpected results if the base image changes",
        ),
        (
            "UndefinedVar",
            12,
            "Usage of undefined variable '$NOT_DEFINED'",
        ),
        (
            "LegacyKeyValueFormat",
            13,
            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
        ),
        (
            "ConsistentInstructionCasing",
            14,
            "Command 'run' should match the case of the command majority (uppercase)",
        ),
        (
            "FromAsCasing",
            16,
            "'as' and 'FROM' keywords' casing do not match",
        ),
        (
            "MultipleInstructionsDisallowed",
            17,
            "Multiple CMD instructions should not be used in the same stage because only the last one will be used",
        ),
        (
            "JSONArgsRecommended",
            18,
            "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
        ),
        (
            "MaintainerDeprecated",
            19,
            "Maintainer instruction is deprecated in favor of using label",
        ),
        (
            "DuplicateStageName",
            23,
            "Duplicate stage name \"dup\", stage names should be unique",
        ),
        ("NoEmptyContinuation", 24, "Empty continuation line"),
        (
            "ReservedStageName",
            28,
            "Stage name should not use the same name as reserved stage \"context\"",
        ),
        (
            "SecretsUsedInArgOrEnv",
            29,
            "Do not use ARG or ENV instructions for sensitive data (ARG \"API_TOKEN\")",
        ),
        (
            "ExposeProtoCasing",
            30,
            "Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
        ),
        (
            "ExposeInvalidFormat",
            31,
            "EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'",
        ),
        (
            "UndefinedArgInFrom",
            33,
            "FROM argument 'NOPE' is not declared",
        ),
        (
            "RedundantTargetPlatform",
            35,
            "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
        ),
        (
            "FromPlatformFlagConstDisallowed",
            37,
            "FROM --platform flag should not use constant value \"linux/amd64\"",
        ),
        (
            "InvalidDefaultArgInFrom",
            39,
            "Default value for ARG ${IMG} results in empty or invalid base image name",
        ),
        (
            "InvalidBaseImagePlatform",
            41,
            "Base image armonly was pulled with platform \"windows/amd64\", expected \"linux/amd64\" for current build",
        ),
        (
            "CopyIgnoredFile",
            42,
            "Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore",
        ),
        (
            "InvalidDefinitionDescription",
            45,
            "Comment for FROM should follow the format: `# described <description>`",
        ),
    ];
    assert_eq!(got, expected);
    let mut rules: Vec<Rule> = report.findings.iter().map(|f| f.rule).collect();
    rules.sort();
    rules.dedup();
    assert_eq!(rules.len(), Rule::ALL.len(), "every rule exactly once");
    assert!(!report.config.error);
}

#[test]
fn skip_rules_and_skip_all() {
    let text = ALL_RULES.replacen(
        "# check=experimental=InvalidDefinitionDescription",
        "# check=skip=UndefinedVar, StageNameCasing",
        1,
    );
    let got = names_and_lines(&check(&text).findings);
    assert_eq!(got.len(), 19, "{got:?}");
    for gone in [
        "UndefinedVar",
        "StageNameCasing",
        "InvalidDefinitionDescription",
    ] {
        assert!(got.iter().all(|(n, _)| *n != gone), "{gone} in {got:?}");
    }
    let text = ALL_RULES.replacen(
        "# check=experimental=InvalidDefinitionDescription",
        "# check=skip=all",
        1,
    );
    assert_eq!(names_and_lines(&check(&text).findings), vec![]);
}

#[test]
fn error_true_fails_lowering_and_is_reported_by_check() {
    let text = "# check=error=true\nFROM scratch\nMAINTAINER me\n";
    let report = check(text);
    assert!(report.config.error);
    assert_eq!(
        names_and_lines(&report.findings),
        vec![("MaintainerDeprecated", 3)]
    );
    let df = frontend::parse("Dockerfile", text).unwrap();
    let err = frontend::lower(&df, &opts(), &FakeResolver).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dockerfile: lint violation found for rules: MaintainerDeprecated\n  hint: Dockerfile:3:1: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label\n  fix these, or skip rules with `# check=skip=<rules>`, or drop `# check=error=true`"
    );
    // Without error=true the finding is a warning of the build.
    let df = frontend::parse("Dockerfile", "FROM scratch\nMAINTAINER me\n").unwrap();
    let g = frontend::lower(&df, &BuildOptions::default(), &FakeResolver).unwrap();
    assert_eq!(
        g.warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![
            "warning: Dockerfile:2:1: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label\n  hint: The MAINTAINER instruction is deprecated, use a label instead to define an image author (https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/)"
        ]
    );
}

#[test]
fn bad_check_directive_is_an_error_at_its_line() {
    let df = frontend::parse("Dockerfile", "# check=error=maybe\nFROM scratch\n").unwrap();
    let err = frontend::check(&df, &opts(), &FakeResolver, &Facts::default()).unwrap_err();
    assert_eq!(err.line, 1);
    assert!(
        err.message.contains("failed to parse check option"),
        "{err}"
    );
}

#[test]
fn lints_stages_the_target_does_not_need() {
    let text = "FROM scratch AS a\nWORKDIR rel\nFROM scratch AS b\n";
    let mut o = opts();
    o.target = Some("b".into());
    let df = frontend::parse("Dockerfile", text).unwrap();
    let report = frontend::check(&df, &o, &FakeResolver, &Facts::default()).unwrap();
    assert_eq!(
        names_and_lines(&report.findings),
        vec![("WorkdirRelativePath", 2)]
    );
}

#[test]
fn undefined_var_needs_the_base_config() {
    // With the offline resolver the base image's Env is unknown: no
    // UndefinedVar guesses; on scratch everything is known.
    let text = "FROM alpine\nENV A=$HOME\nFROM scratch\nENV B=$HOME\n";
    let df = frontend::parse("Dockerfile", text).unwrap();
    let report =
        frontend::check(&df, &opts(), &frontend::EmptyResolver, &Facts::default()).unwrap();
    assert_eq!(names_and_lines(&report.findings), vec![("UndefinedVar", 4)]);
    // Declared ARGs, even without a value, are not undefined; a near miss
    // gets BuildKit's suggestion.
    let text = "FROM scratch\nARG VERSION\nENV A=$VERSION B=$PAHT\n";
    let df = frontend::parse("Dockerfile", text).unwrap();
    let report = frontend::check(&df, &opts(), &FakeResolver, &Facts::default()).unwrap();
    let msgs: Vec<&str> = report.findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        msgs,
        vec!["Usage of undefined variable '$PAHT' (did you mean $PATH?)"]
    );
}
