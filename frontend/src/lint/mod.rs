//! BuildKit's build checks (`docker build --check`): the 22 lint rules of
//! `frontend/dockerfile/linter/ruleset.go`, with BuildKit's names, messages
//! and documentation links.
//!
//! The engine is pure: rules that look only at the syntax tree live in
//! [`syntax`]; the rules that need expanded words (undefined variables, FROM
//! arguments, platforms, WORKDIR, EXPOSE, secrets) are reported by lowering,
//! which knows every stage's scope. The two facts that need I/O come in as
//! parameters ([`Facts`]): which context paths `.dockerignore` excludes
//! (CopyIgnoredFile) and the platform a base image really has
//! (InvalidBaseImagePlatform, through the resolver).
//!
//! `# check=skip=Rule1,Rule2`, `skip=all`, `experimental=…` and
//! `error=true` are read from the Dockerfile's `check` directive
//! ([`CheckConfig`]).

pub mod syntax;

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::ast::{Dockerfile, Span};
use crate::diagnostic::Diagnostic;

/// One of BuildKit's lint rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Rule {
    StageNameCasing,
    FromAsCasing,
    NoEmptyContinuation,
    ConsistentInstructionCasing,
    DuplicateStageName,
    ReservedStageName,
    JSONArgsRecommended,
    MaintainerDeprecated,
    UndefinedArgInFrom,
    WorkdirRelativePath,
    UndefinedVar,
    MultipleInstructionsDisallowed,
    LegacyKeyValueFormat,
    InvalidBaseImagePlatform,
    RedundantTargetPlatform,
    SecretsUsedInArgOrEnv,
    InvalidDefaultArgInFrom,
    FromPlatformFlagConstDisallowed,
    CopyIgnoredFile,
    InvalidDefinitionDescription,
    ExposeProtoCasing,
    ExposeInvalidFormat,
}

impl Rule {
    /// Every rule, in BuildKit's order.
    pub const ALL: [Rule; 22] = [
        Rule::StageNameCasing,
        Rule::FromAsCasing,
        Rule::NoEmptyContinuation,
        Rule::ConsistentInstructionCasing,
        Rule::DuplicateStageName,
        Rule::ReservedStageName,
        Rule::JSONArgsRecommended,
        Rule::MaintainerDeprecated,
        Rule::UndefinedArgInFrom,
        Rule::WorkdirRelativePath,
        Rule::UndefinedVar,
        Rule::MultipleInstructionsDisallowed,
        Rule::LegacyKeyValueFormat,
        Rule::InvalidBaseImagePlatform,
        Rule::RedundantTargetPlatform,
        Rule::SecretsUsedInArgOrEnv,
        Rule::InvalidDefaultArgInFrom,
        Rule::FromPlatformFlagConstDisallowed,
        Rule::CopyIgnoredFile,
        Rule::InvalidDefinitionDescription,
        Rule::ExposeProtoCasing,
        Rule::ExposeInvalidFormat,
    ];

    /// The name as BuildKit spells it (what `skip=` takes).
    pub fn name(self) -> &'static str {
        match self {
            Rule::StageNameCasing => "StageNameCasing",
            Rule::FromAsCasing => "FromAsCasing",
            Rule::NoEmptyContinuation => "NoEmptyContinuation",
            Rule::ConsistentInstructionCasing => "ConsistentInstructionCasing",
            Rule::DuplicateStageName => "DuplicateStageName",
            Rule::ReservedStageName => "ReservedStageName",
            Rule::JSONArgsRecommended => "JSONArgsRecommended",
            Rule::MaintainerDeprecated => "MaintainerDeprecated",
            Rule::UndefinedArgInFrom => "UndefinedArgInFrom",
            Rule::WorkdirRelativePath => "WorkdirRelativePath",
            Rule::UndefinedVar => "UndefinedVar",
            Rule::MultipleInstructionsDisallowed => "MultipleInstructionsDisallowed",
            Rule::LegacyKeyValueFormat => "LegacyKeyValueFormat",
            Rule::InvalidBaseImagePlatform => "InvalidBaseImagePlatform",
            Rule::RedundantTargetPlatform => "RedundantTargetPlatform",
            Rule::SecretsUsedInArgOrEnv => "SecretsUsedInArgOrEnv",
            Rule::InvalidDefaultArgInFrom => "InvalidDefaultArgInFrom",
            Rule::FromPlatformFlagConstDisallowed => "FromPlatformFlagConstDisallowed",
            Rule::CopyIgnoredFile => "CopyIgnoredFile",
            Rule::InvalidDefinitionDescription => "InvalidDefinitionDescription",
            Rule::ExposeProtoCasing => "ExposeProtoCasing",
            Rule::ExposeInvalidFormat => "ExposeInvalidFormat",
        }
    }

    /// BuildKit's one-line description of the rule.
    pub fn description(self) -> &'static str {
        match self {
            Rule::StageNameCasing => "Stage names should be lowercase",
            Rule::FromAsCasing => "The 'as' keyword should match the case of the 'from' keyword",
            Rule::NoEmptyContinuation => {
                "Empty continuation lines will become errors in a future release"
            }
            Rule::ConsistentInstructionCasing => {
                "All commands within the Dockerfile should use the same casing (either upper or lower)"
            }
            Rule::DuplicateStageName => "Stage names should be unique",
            Rule::ReservedStageName => "Reserved words should not be used as stage names",
            Rule::JSONArgsRecommended => {
                "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals"
            }
            Rule::MaintainerDeprecated => {
                "The MAINTAINER instruction is deprecated, use a label instead to define an image author"
            }
            Rule::UndefinedArgInFrom => "FROM command must use declared ARGs",
            Rule::WorkdirRelativePath => {
                "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes"
            }
            Rule::UndefinedVar => "Variables should be defined before their use",
            Rule::MultipleInstructionsDisallowed => {
                "Multiple instructions of the same type should not be used in the same stage"
            }
            Rule::LegacyKeyValueFormat => {
                "Legacy key/value format with whitespace separator should not be used"
            }
            Rule::InvalidBaseImagePlatform => {
                "Base image platform does not match expected target platform"
            }
            Rule::RedundantTargetPlatform => {
                "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior"
            }
            Rule::SecretsUsedInArgOrEnv => {
                "Sensitive data should not be used in the ARG or ENV commands"
            }
            Rule::InvalidDefaultArgInFrom => {
                "Default value for global ARG results in an empty or invalid base image name"
            }
            Rule::FromPlatformFlagConstDisallowed => {
                "FROM --platform flag should not use a constant value"
            }
            Rule::CopyIgnoredFile => "Attempting to Copy file that is excluded by .dockerignore",
            Rule::InvalidDefinitionDescription => {
                "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment."
            }
            Rule::ExposeProtoCasing => "Protocol in EXPOSE instruction should be lowercase",
            Rule::ExposeInvalidFormat => {
                "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release"
            }
        }
    }

    /// The rule's documentation page (BuildKit gives none for
    /// InvalidBaseImagePlatform).
    pub fn url(self) -> Option<String> {
        let slug = match self {
            Rule::InvalidBaseImagePlatform => return None,
            Rule::JSONArgsRecommended => "json-args-recommended".to_string(),
            r => kebab(r.name()),
        };
        Some(format!(
            "https://docs.docker.com/go/dockerfile/rule/{slug}/"
        ))
    }

    /// Experimental rules run only when `# check=experimental=` names them.
    pub fn experimental(self) -> bool {
        self == Rule::InvalidDefinitionDescription
    }

    /// Looks a rule up by its exact name.
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `StageNameCasing` → `stage-name-casing`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The `# check=` directive: which rules run and whether findings fail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: BTreeSet<String>,
    pub experimental_all: bool,
    pub experimental: BTreeSet<String>,
    /// `error=true`: any finding fails the build (and `check`).
    pub error: bool,
}

impl CheckConfig {
    /// Parses a directive value such as `skip=A,B;error=true` (BuildKit's
    /// `ParseLintOptions`: at most three `;`-separated `key=value` parts).
    pub fn parse(value: &str) -> Result<CheckConfig, String> {
        let value = value.trim();
        let mut config = CheckConfig::default();
        if value.is_empty() {
            return Ok(config);
        }
        for part in value.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            let v = v.trim();
            match k.trim() {
                "skip" if v == "all" => config.skip_all = true,
                "skip" => config.skip = v.split(',').map(|r| r.trim().to_string()).collect(),
                "experimental" if v == "all" => config.experimental_all = true,
                "experimental" => {
                    config.experimental = v.split(',').map(|r| r.trim().to_string()).collect();
                }
                "error" => {
                    config.error = parse_go_bool(v)
                        .ok_or_else(|| format!("failed to parse check option {part:?}"))?;
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(config)
    }

    /// The config a Dockerfile's `check` directive sets (defaults when it
    /// has none). A malformed directive is an error at its line.
    pub fn of(df: &Dockerfile, file: &str) -> Result<CheckConfig, Diagnostic> {
        let Some(d) = df.directives.iter().find(|d| d.name == "check") else {
            return Ok(CheckConfig::default());
        };
        CheckConfig::parse(&d.value).map_err(|e| {
            Diagnostic::at(file, d.span, e)
                .with_hint("write e.g. `# check=skip=JSONArgsRecommended;error=true`")
        })
    }

    /// Whether `rule` runs under this config.
    pub fn enabled(&self, rule: Rule) -> bool {
        if rule.experimental() {
            self.experimental_all || self.experimental.contains(rule.name())
        } else {
            !(self.skip_all || self.skip.contains(rule.name()))
        }
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// One rule violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    /// BuildKit's message for this occurrence.
    pub message: String,
    pub file: String,
    /// 1-based line and column of the instruction the finding is about.
    pub line: usize,
    pub column: usize,
}

impl Finding {
    /// The finding as a warning diagnostic: `file:line:col: Rule: message`,
    /// with the rule's description and link as the hint.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let mut hint = self.rule.description().to_string();
        if let Some(url) = self.rule.url() {
            hint.push_str(&format!(" ({url})"));
        }
        Diagnostic::error(
            &self.file,
            self.line,
            self.column,
            format!("{}: {}", self.rule, self.message),
        )
        .with_hint(hint)
        .warning()
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.rule, self.message
        )
    }
}

/// Facts about the world outside the Dockerfile that some rules need.
#[derive(Default)]
pub struct Facts<'a> {
    /// Whether `.dockerignore` excludes a context path (cleaned, relative,
    /// `/`-separated). `None` when there is no `.dockerignore` or it has
    /// `!` exceptions (BuildKit does not check then either).
    pub ignored: Option<&'a dyn Fn(&str) -> bool>,
}

/// Collects findings under a [`CheckConfig`].
#[derive(Debug, Clone, Default)]
pub struct Linter {
    pub config: CheckConfig,
    pub file: String,
    pub findings: Vec<Finding>,
}

impl Linter {
    pub fn new(file: &str, config: CheckConfig) -> Linter {
        Linter {
            config,
            file: file.to_string(),
            findings: Vec::new(),
        }
    }

    /// Records a finding at `span` unless the rule is switched off.
    pub fn report(&mut self, rule: Rule, span: Span, message: impl Into<String>) {
        if !self.config.enabled(rule) {
            return;
        }
        self.findings.push(Finding {
            rule,
            message: message.into(),
            file: self.file.clone(),
            line: span.line,
            column: span.column,
        });
    }

    /// BuildKit's error when `error=true` and something was found:
    /// `lint violation found for rules: A, B`.
    pub fn violation(&self) -> Option<String> {
        if !self.config.error || self.findings.is_empty() {
            return None;
        }
        let mut names: Vec<&str> = Vec::new();
        for f in &self.findings {
            if !names.contains(&f.rule.name()) {
                names.push(f.rule.name());
            }
        }
        Some(format!(
            "lint violation found for rules: {}",
            names.join(", ")
        ))
    }
}

/// What `strata check` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub config: CheckConfig,
    /// In source order.
    pub findings: Vec<Finding>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls_follow_buildkit() {
        assert_eq!(Rule::ALL.len(), 22);
        assert_eq!(
            Rule::StageNameCasing.url().unwrap(),
            "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/"
        );
        assert_eq!(
            Rule::JSONArgsRecommended.url().unwrap(),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(
            Rule::FromPlatformFlagConstDisallowed.url().unwrap(),
            "https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/"
        );
        assert!(Rule::InvalidBaseImagePlatform.url().is_none());
        assert_eq!(Rule::from_name("UndefinedVar"), Some(Rule::UndefinedVar));
    }

    #[test]
    fn check_directive_options() {
        let c = CheckConfig::parse("skip=A, B;error=true").unwrap();
        assert!(c.error && c.skip.contains("A") && c.skip.contains("B"));
        assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
        assert!(CheckConfig::parse("error=maybe").is_err());
        assert!(CheckConfig::parse("nope").is_err());
        assert!(CheckConfig::parse("color=red").is_err());
        let c = CheckConfig::parse("experimental=all").unwrap();
        assert!(c.enabled(Rule::InvalidDefinitionDescription));
        assert!(!CheckConfig::default().enabled(Rule::InvalidDefinitionDescription));
        assert!(
            !CheckConfig::parse("skip=all")
                .unwrap()
                .enabled(Rule::UndefinedVar)
        );
    }
}
