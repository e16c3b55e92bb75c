//! The rules that need only the syntax tree: casing, stage names,
//! deprecated and repeated instructions, the legacy `KEY value` form,
//! secret-looking names, empty continuation lines and description
//! comments. They run over every stage, whatever the target.

use std::collections::HashSet;

use crate::ast::{Args, Dockerfile, Instruction, Keyword};

use super::{Linter, Rule};

/// Stage names BuildKit reserves.
const RESERVED_STAGE_NAMES: [&str; 2] = ["context", "scratch"];

/// Runs every syntax rule over `df`.
pub fn check(df: &Dockerfile, lint: &mut Linter) {
    for w in &df.warnings {
        if w.message.starts_with("Empty continuation line") {
            let span = crate::ast::Span {
                line: w.line,
                column: w.column,
                ..Default::default()
            };
            lint.report(Rule::NoEmptyContinuation, span, "Empty continuation line");
        }
    }
    let stages = split_stages(df);
    for ins in &df.instructions {
        per_instruction(ins, lint);
    }
    stage_names(&stages, lint);
    casing(&stages, lint);
    for stage in &stages {
        used_once(&stage.body, lint);
        for ins in &stage.body {
            secrets(ins, lint);
        }
    }
}

/// A FROM line and the instructions after it.
struct StageSyntax<'a> {
    from: &'a Instruction,
    body: Vec<&'a Instruction>,
}

fn split_stages(df: &Dockerfile) -> Vec<StageSyntax<'_>> {
    let mut stages: Vec<StageSyntax<'_>> = Vec::new();
    for ins in &df.instructions {
        if ins.kind == Keyword::From {
            stages.push(StageSyntax {
                from: ins,
                body: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.body.push(ins);
        }
    }
    stages
}

/// The words of a FROM line: image, and `AS name` when present.
fn from_words(from: &Instruction) -> Vec<&str> {
    match &from.args {
        Args::Words { words } => words.iter().map(|w| w.value.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// Rules BuildKit checks while parsing each instruction.
fn per_instruction(ins: &Instruction, lint: &mut Linter) {
    let span = ins.keyword_span;
    match ins.kind {
        Keyword::Maintainer => lint.report(
            Rule::MaintainerDeprecated,
            span,
            "Maintainer instruction is deprecated in favor of using label",
        ),
        Keyword::From => {
            let words = from_words(ins);
            if let [_, as_kw, name] = words.as_slice() {
                if *name != name.to_lowercase() {
                    lint.report(
                        Rule::StageNameCasing,
                        span,
                        format!("Stage name '{name}' should be lowercase"),
                    );
                }
                if !from_as_casing_matches(&ins.keyword, as_kw) {
                    lint.report(
                        Rule::FromAsCasing,
                        span,
                        format!(
                            "'{as_kw}' and '{}' keywords' casing do not match",
                            ins.keyword
                        ),
                    );
                }
                definition_description(ins, "FROM", &[name.to_lowercase()], lint);
            }
        }
        Keyword::Arg => {
            if let Args::ArgDecls { decls } = &ins.args {
                let keys: Vec<String> = decls.iter().map(|d| d.name.clone()).collect();
                definition_description(ins, "ARG", &keys, lint);
            }
        }
        Keyword::Env | Keyword::Label => {
            if let Args::KeyValues { pairs } = &ins.args {
                // One finding per `KEY value` pair, as BuildKit reports.
                for _ in pairs.iter().filter(|p| !p.equals) {
                    let name = &ins.keyword;
                    lint.report(
                        Rule::LegacyKeyValueFormat,
                        span,
                        format!(
                            "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
                        ),
                    );
                }
            }
        }
        _ => {}
    }
}

/// BuildKit's `doesFromCaseMatchAsCase`: a mixed-case FROM is left to the
/// casing rule; otherwise `AS` must have the same case as `FROM`.
fn from_as_casing_matches(from: &str, as_kw: &str) -> bool {
    let lower = from == from.to_lowercase();
    let upper = from == from.to_uppercase();
    if !lower && !upper {
        return true;
    }
    if lower {
        as_kw == as_kw.to_lowercase()
    } else {
        as_kw == as_kw.to_uppercase()
    }
}

/// InvalidDefinitionDescription (experimental): the comment right above a
/// named stage or an ARG should start with the name it documents.
fn definition_description(ins: &Instruction, what: &str, keys: &[String], lint: &mut Linter) {
    let Some(last) = ins.comments.last() else {
        return;
    };
    if keys.is_empty() {
        return;
    }
    let first_word = last.split(' ').next().unwrap_or("");
    if keys.iter().any(|k| k == first_word) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        &keys[0]
    };
    lint.report(
        Rule::InvalidDefinitionDescription,
        ins.keyword_span,
        format!("Comment for {what} should follow the format: `# {example} <description>`"),
    );
}

/// DuplicateStageName and ReservedStageName.
fn stage_names(stages: &[StageSyntax<'_>], lint: &mut Linter) {
    let mut seen = HashSet::new();
    for s in stages {
        let words = from_words(s.from);
        let [_, _, name] = words.as_slice() else {
            continue;
        };
        let name = name.to_lowercase();
        if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
            lint.report(
                Rule::ReservedStageName,
                s.from.keyword_span,
                format!("Stage name should not use the same name as reserved stage {name:?}"),
            );
        }
        if !seen.insert(name.clone()) {
            lint.report(
                Rule::DuplicateStageName,
                s.from.keyword_span,
                format!("Duplicate stage name {name:?}, stage names should be unique"),
            );
        }
    }
}

/// ConsistentInstructionCasing: every keyword of the stages (global ARGs
/// do not count) against the majority casing.
fn casing(stages: &[StageSyntax<'_>], lint: &mut Linter) {
    let keywords = || {
        stages
            .iter()
            .flat_map(|s| std::iter::once(s.from).chain(s.body.iter().copied()))
    };
    let (mut lower, mut upper) = (0usize, 0usize);
    for ins in keywords() {
        let k = &ins.keyword;
        if *k == k.to_lowercase() {
            lower += 1;
        } else if *k == k.to_uppercase() {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for ins in keywords() {
        let k = &ins.keyword;
        let correct = if majority_lower && *k != k.to_lowercase() {
            "lowercase"
        } else if !majority_lower && *k != k.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        lint.report(
            Rule::ConsistentInstructionCasing,
            ins.keyword_span,
            format!("Command '{k}' should match the case of the command majority ({correct})"),
        );
    }
}

/// MultipleInstructionsDisallowed: a second CMD, ENTRYPOINT or HEALTHCHECK
/// in a stage makes the earlier one useless; the earlier one is reported.
fn used_once(body: &[&Instruction], lint: &mut Linter) {
    let mut last: [Option<&Instruction>; 3] = [None; 3];
    for ins in body {
        let slot = match ins.kind {
            Keyword::Cmd => 0,
            Keyword::Entrypoint => 1,
            Keyword::Healthcheck => 2,
            _ => continue,
        };
        if let Some(prev) = last[slot] {
            lint.report(
                Rule::MultipleInstructionsDisallowed,
                prev.keyword_span,
                format!(
                    "Multiple {} instructions should not be used in the same stage because only the last one will be used",
                    ins.keyword
                ),
            );
        }
        last[slot] = Some(ins);
    }
}

/// SecretsUsedInArgOrEnv: an ARG or ENV (in a stage) whose name looks
/// like a secret.
fn secrets(ins: &Instruction, lint: &mut Linter) {
    let keys: Vec<&str> = match (&ins.kind, &ins.args) {
        (Keyword::Env, Args::KeyValues { pairs }) => {
            pairs.iter().map(|p| p.key.value.as_str()).collect()
        }
        (Keyword::Arg, Args::ArgDecls { decls }) => decls.iter().map(|d| d.name.as_str()).collect(),
        _ => return,
    };
    let what = if ins.kind == Keyword::Env {
        "ENV"
    } else {
        "ARG"
    };
    for key in keys {
        if looks_secret(key) {
            lint.report(
                Rule::SecretsUsedInArgOrEnv,
                ins.keyword_span,
                format!("Do not use ARG or ENV instructions for sensitive data ({what} {key:?})"),
            );
        }
    }
}

/// BuildKit's secret-name test: a `_`-separated word of the name (its
/// first or last, or the whole name) is a secret token, and none is an
/// allowed token, case-insensitively.
pub fn looks_secret(key: &str) -> bool {
    const DENY: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: [&str; 3] = ["public", "file", "version"];
    has_token(key, &DENY) && !has_token(key, &ALLOW)
}

/// Whether `(?:_|^)(?:tokens)(?:_|$)` matches `key`, ignoring case: some
/// token sits between `_`s or the ends.
fn has_token(key: &str, tokens: &[&str]) -> bool {
    let lower = key.to_lowercase();
    let bytes = lower.as_bytes();
    tokens.iter().any(|t| {
        lower.match_indices(t).any(|(i, _)| {
            let end = i + t.len();
            (i == 0 || bytes[i - 1] == b'_') && (end == bytes.len() || bytes[end] == b'_')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_as_buildkit_matches_them() {
        for k in [
            "api_key",
            "DATABASE_PASSWORD",
            "GITHUB_TOKEN",
            "secret_MESSAGE",
            "AUTH",
            "my_key_id",
        ] {
            assert!(looks_secret(k), "{k}");
        }
        for k in [
            "PUBLIC_KEY",
            "KEY_FILE",
            "TOKEN_VERSION",
            "MONKEY",
            "keys",
            "PATH",
        ] {
            assert!(!looks_secret(k), "{k}");
        }
    }

    #[test]
    fn from_as_casing() {
        assert!(from_as_casing_matches("FROM", "AS"));
        assert!(from_as_casing_matches("from", "as"));
        assert!(!from_as_casing_matches("FROM", "as"));
        assert!(from_as_casing_matches("From", "as"));
    }
}
