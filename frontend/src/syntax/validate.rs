//! The instruction layer: is each parsed instruction well-formed?
//!
//! The parser accepts anything BuildKit's parser accepts (unknown keywords,
//! `HEALTHCHECK CONNECT`, flags on `MAINTAINER`), so that `strata parse
//! --dump` matches BuildKit. This module then does what BuildKit does when it
//! turns a parsed node into a typed command: it rejects unknown instructions
//! (with a "did you mean"), unknown or misplaced flags (BuildKit's flag rules:
//! string flags need `=value`, booleans take `true`/`false`, only some flags
//! repeat), wrong argument counts, and forbidden ONBUILD triggers. Lowering
//! calls [`validate_instruction`] on every instruction it handles. Values
//! (durations, mount options, platforms) are lowering's business.

use crate::ast::{Args, Command, Dockerfile, Flag, Instruction, Keyword};
use crate::diagnostic::Diagnostic;

use super::flagspec::{FlagError, parse_flags};
pub use super::flagspec::{FlagSpec, FlagType, allowed_flags};
use super::heredoc::parse_heredoc_word;

/// Checks every instruction of `file`; the first problem is returned.
pub fn validate(file: &Dockerfile) -> Result<(), Diagnostic> {
    for inst in &file.instructions {
        validate_instruction(&file.file_name, inst)?;
    }
    Ok(())
}

/// Checks one instruction the way BuildKit's instruction layer does.
pub fn validate_instruction(file: &str, inst: &Instruction) -> Result<(), Diagnostic> {
    let upper = inst.kind.as_upper();
    let err = |message: String, hint: String| {
        Diagnostic::at(file, inst.keyword_span, message).with_hint(hint)
    };
    if inst.kind == Keyword::Unknown {
        let hint = match suggest(&inst.keyword) {
            Some(k) => format!("did you mean {k}?"),
            None => format!(
                "instructions are {}",
                Keyword::ALL.map(|(n, _)| n).join(", ")
            ),
        };
        return Err(err(format!("unknown instruction: {}", inst.keyword), hint));
    }
    check_flags(file, inst)?;
    let count = arg_count(inst);
    match inst.kind {
        Keyword::Maintainer | Keyword::Workdir | Keyword::User | Keyword::Stopsignal
            if count != 1 =>
        {
            return Err(err(
                format!("{upper} requires exactly one argument"),
                format!("write `{upper} <value>`"),
            ));
        }
        Keyword::Env
        | Keyword::Label
        | Keyword::Onbuild
        | Keyword::Healthcheck
        | Keyword::Expose
        | Keyword::Volume
        | Keyword::Arg
            if count == 0 =>
        {
            return Err(err(
                format!("{upper} requires at least one argument"),
                format!("add what {upper} applies to after the keyword"),
            ));
        }
        Keyword::Copy | Keyword::Add => check_sources_and_dest(file, inst, upper)?,
        Keyword::From => check_from(file, inst)?,
        Keyword::Shell
            if !matches!(
                inst.args,
                Args::Command {
                    command: Command::Exec(_)
                }
            ) =>
        {
            return Err(err(
                "SHELL requires the arguments to be in JSON form".to_string(),
                "write e.g. SHELL [\"/bin/sh\", \"-c\"]".to_string(),
            ));
        }
        _ => {}
    }
    match &inst.args {
        Args::KeyValues { pairs } => {
            if let Some(p) = pairs.iter().find(|p| p.key.value.is_empty()) {
                return Err(Diagnostic::at(
                    file,
                    p.span,
                    format!("{upper} names can not be blank"),
                )
                .with_hint("write name=value with a non-empty name"));
            }
        }
        Args::Onbuild { trigger } => check_trigger(file, trigger)?,
        Args::Healthcheck { kind, command } => {
            let here = |m: String, h: &str| Diagnostic::at(file, kind.span, m).with_hint(h);
            match kind.value.to_ascii_uppercase().as_str() {
                "NONE" => {
                    if command.is_some() {
                        return Err(here(
                            "HEALTHCHECK NONE takes no arguments".into(),
                            "write just `HEALTHCHECK NONE`",
                        ));
                    }
                }
                "CMD" => {
                    if command.is_none() {
                        return Err(here(
                            "Missing command after HEALTHCHECK CMD".into(),
                            "write `HEALTHCHECK CMD <command>`",
                        ));
                    }
                }
                other => {
                    return Err(here(
                        format!("Unknown type \"{other}\" in HEALTHCHECK (try CMD)"),
                        "use `HEALTHCHECK CMD <command>` or `HEALTHCHECK NONE`",
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_trigger(file: &str, trigger: &Instruction) -> Result<(), Diagnostic> {
    let at = |m: &str, h: &str| Diagnostic::at(file, trigger.keyword_span, m).with_hint(h);
    match trigger.kind {
        Keyword::Onbuild => Err(at(
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            "write the trigger instruction directly after one ONBUILD",
        )),
        Keyword::From => Err(at(
            "FROM isn't allowed as an ONBUILD trigger",
            "an ONBUILD trigger runs inside a stage; start stages with a top-level FROM",
        )),
        Keyword::Maintainer => Err(at(
            "MAINTAINER isn't allowed as an ONBUILD trigger",
            "use ONBUILD LABEL maintainer=... instead",
        )),
        _ => validate_instruction(file, trigger),
    }
}

/// How many arguments BuildKit's node chain would hold.
fn arg_count(inst: &Instruction) -> usize {
    match &inst.args {
        Args::Empty | Args::Unknown => 0,
        Args::Command { command } => match command {
            Command::Exec(w) => w.len(),
            Command::Shell(_) => 1,
        },
        Args::Healthcheck { command, .. } => {
            1 + match command {
                None => 0,
                Some(Command::Exec(w)) => w.len(),
                Some(Command::Shell(_)) => 1,
            }
        }
        Args::List { items, .. } => items.len(),
        Args::Words { words } => words.len(),
        Args::Text { .. } | Args::Onbuild { .. } => 1,
        Args::KeyValues { pairs } => pairs.len() * 3,
        Args::ArgDecls { decls } => decls.len(),
    }
}

fn check_sources_and_dest(file: &str, inst: &Instruction, upper: &str) -> Result<(), Diagnostic> {
    let Args::List { json, items } = &inst.args else {
        return Err(Diagnostic::at(
            file,
            inst.keyword_span,
            format!("{upper} requires at least two arguments"),
        )
        .with_hint(format!("write `{upper} <source>... <destination>`")));
    };
    match items.as_slice() {
        [] => Err(
            Diagnostic::at(file, inst.keyword_span, format!("{upper} requires at least two arguments"))
                .with_hint(format!("write `{upper} <source>... <destination>`")),
        ),
        [only] => Err(Diagnostic::at(
            file,
            only.span,
            format!(
                "{upper} requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
        )
        .with_hint(format!("add the destination path: `{upper} {} <destination>`", only.value))),
        [.., dest] => {
            if !json && matches!(parse_heredoc_word(&dest.value), Ok(Some(_))) {
                return Err(Diagnostic::at(
                    file,
                    dest.span,
                    format!("{upper} cannot accept a heredoc as a destination"),
                )
                .with_hint("put the heredoc before the destination: COPY <<EOF /path"));
            }
            Ok(())
        }
    }
}

fn check_from(file: &str, inst: &Instruction) -> Result<(), Diagnostic> {
    let words = match &inst.args {
        Args::Words { words } => words.as_slice(),
        _ => &[],
    };
    let ok = match words {
        [_] => true,
        [_, as_, _] => as_.value.eq_ignore_ascii_case("as"),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(Diagnostic::at(
        file,
        inst.keyword_span,
        "FROM requires either one or three arguments",
    )
    .with_hint("write `FROM <image>` or `FROM <image> AS <name>`"))
}

/// BuildKit's flag rules, plus a clearer message for a flag that exists but
/// belongs to another instruction.
fn check_flags(file: &str, inst: &Instruction) -> Result<(), Diagnostic> {
    match parse_flags(allowed_flags(inst.kind), &inst.flags) {
        Ok(_) => Ok(()),
        Err(FlagError::Unknown(i)) => Err(unknown_flag(file, inst, &inst.flags[i])),
        Err(e) => {
            let (i, message, hint) = e.describe(&inst.flags);
            Err(Diagnostic::at(file, inst.flags[i].span, message).with_hint(hint))
        }
    }
}

fn unknown_flag(file: &str, inst: &Instruction, flag: &Flag) -> Diagnostic {
    let upper = inst.kind.as_upper();
    let specs = allowed_flags(inst.kind);
    let accepted = if specs.is_empty() {
        format!("{upper} takes no flags")
    } else {
        let names: Vec<String> = specs.iter().map(|s| format!("--{}", s.name)).collect();
        format!("{upper} accepts {}", names.join(", "))
    };
    let owners: Vec<&str> = Keyword::ALL
        .iter()
        .filter(|(_, k)| allowed_flags(*k).iter().any(|s| s.name == flag.name))
        .map(|(n, _)| *n)
        .collect();
    let message = if owners.is_empty() {
        format!("unknown flag: --{}", flag.name)
    } else {
        format!(
            "unknown flag: --{0} (flag --{0} is not allowed on {upper}, only on {1})",
            flag.name,
            owners.join(", ")
        )
    };
    Diagnostic::at(file, flag.span, message).with_hint(accepted)
}

/// The known keyword closest to `word`, if it is close enough to be a typo.
pub fn suggest(word: &str) -> Option<&'static str> {
    let upper = word.to_ascii_uppercase();
    Keyword::ALL
        .iter()
        .map(|(name, _)| (edit_distance(&upper, name), *name))
        .filter(|(d, name)| *d <= 2 && *d < name.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("FORM"), Some("FROM"));
        assert_eq!(suggest("rn"), Some("RUN"));
        assert_eq!(suggest("COPPY"), Some("COPY"));
        assert_eq!(suggest("ZZZZZZZZ"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
