//! Which flags each instruction defines, and BuildKit's rules for reading
//! their values (its `BFlags`): a string flag needs `=value` (`--x=` is the
//! empty string), a boolean takes a bare `--x`, `--x=true` or `--x=false`,
//! only some flags may repeat, and an undefined flag is an error.

use crate::ast::{Flag, Keyword};

/// The value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagType {
    /// `--name=value` (`--name=` is the empty string; bare `--name` is an error).
    String,
    /// `--name`, `--name=true` or `--name=false`.
    Bool,
}

/// A flag an instruction defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagSpec {
    pub name: &'static str,
    pub ty: FlagType,
    /// May be given more than once (`--mount`, `--exclude`, `--device`).
    pub repeatable: bool,
}

const fn s(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        ty: FlagType::String,
        repeatable: false,
    }
}
const fn b(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        ty: FlagType::Bool,
        repeatable: false,
    }
}
const fn many(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        ty: FlagType::String,
        repeatable: true,
    }
}

const ADD: &[FlagSpec] = &[
    s("chown"),
    s("chmod"),
    b("link"),
    b("keep-git-dir"),
    s("checksum"),
    b("unpack"),
    many("exclude"),
];
const COPY: &[FlagSpec] = &[
    s("chown"),
    s("from"),
    s("chmod"),
    b("link"),
    many("exclude"),
    b("parents"),
];
const FROM: &[FlagSpec] = &[s("platform")];
const HEALTHCHECK: &[FlagSpec] = &[
    s("interval"),
    s("timeout"),
    s("start-period"),
    s("start-interval"),
    s("retries"),
];
const RUN: &[FlagSpec] = &[many("mount"), s("network"), s("security"), many("device")];

/// The flags `kind` defines (empty for instructions without flags).
pub fn allowed_flags(kind: Keyword) -> &'static [FlagSpec] {
    match kind {
        Keyword::Add => ADD,
        Keyword::Copy => COPY,
        Keyword::From => FROM,
        Keyword::Healthcheck => HEALTHCHECK,
        Keyword::Run => RUN,
        _ => &[],
    }
}

/// The flags of one instruction, checked against its [`FlagSpec`]s.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlagValues {
    /// `(name, value)` in order; bare booleans have the value `"true"`.
    given: Vec<(String, String)>,
}

impl FlagValues {
    /// The last value of flag `name`, if it was given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable flag, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.given
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean flag's value: `None` when not given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Whether the flag was given at all (even with its default value).
    pub fn is_used(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| n == name)
    }

    /// The names of all flags given, sorted, without repeats.
    pub fn used_sorted(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.given.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Why a flag list was rejected; the index is the offending flag's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagError {
    /// Not defined for this instruction.
    Unknown(usize),
    /// A non-repeatable flag given twice.
    Duplicate(usize),
    /// A string flag without `=value`.
    MissingValue(usize),
    /// A boolean flag with a value other than true/false.
    NotBool(usize),
}

impl FlagError {
    /// `(flag index, message, hint)`, with BuildKit's messages.
    pub fn describe(&self, flags: &[Flag]) -> (usize, String, String) {
        let name = |i: usize| flags.get(i).map_or("", |f| f.name.as_str()).to_string();
        match *self {
            FlagError::Unknown(i) => (
                i,
                format!("unknown flag: --{}", name(i)),
                "remove the flag or check its spelling".to_string(),
            ),
            FlagError::Duplicate(i) => (
                i,
                format!("Duplicate flag specified: {}", name(i)),
                format!("give --{} only once", name(i)),
            ),
            FlagError::MissingValue(i) => (
                i,
                format!("Missing a value on flag: --{}", name(i)),
                format!("write --{}=<value>", name(i)),
            ),
            FlagError::NotBool(i) => {
                let value = flags
                    .get(i)
                    .and_then(|f| f.value.clone())
                    .unwrap_or_default();
                (
                    i,
                    format!("expecting boolean value for flag {}, not: {value}", name(i)),
                    format!("write --{0}, --{0}=true or --{0}=false", name(i)),
                )
            }
        }
    }
}

/// Reads `flags` against `specs`.
pub fn parse_flags(specs: &[FlagSpec], flags: &[Flag]) -> Result<FlagValues, FlagError> {
    let mut values = FlagValues::default();
    for (i, flag) in flags.iter().enumerate() {
        let Some(spec) = specs.iter().find(|s| s.name == flag.name) else {
            return Err(FlagError::Unknown(i));
        };
        if !spec.repeatable && values.is_used(spec.name) {
            return Err(FlagError::Duplicate(i));
        }
        let value = match (spec.ty, flag.value.as_deref()) {
            (FlagType::String, None) => return Err(FlagError::MissingValue(i)),
            (FlagType::String, Some(v)) => v.to_string(),
            (FlagType::Bool, None) => "true".to_string(),
            (FlagType::Bool, Some(v)) => {
                if v.eq_ignore_ascii_case("true") {
                    "true".to_string()
                } else if v.eq_ignore_ascii_case("false") {
                    "false".to_string()
                } else {
                    return Err(FlagError::NotBool(i));
                }
            }
        };
        values.given.push((spec.name.to_string(), value));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Span;

    fn flags(words: &[&str]) -> Vec<Flag> {
        words
            .iter()
            .map(|w| Flag::from_word(w, Span::default()))
            .collect()
    }

    #[test]
    fn copy_flags() {
        let v = parse_flags(
            allowed_flags(Keyword::Copy),
            &flags(&["--from=a", "--link", "--exclude=x", "--exclude=y"]),
        )
        .unwrap();
        assert_eq!(v.get("from"), Some("a"));
        assert_eq!(v.bool("link"), Some(true));
        assert_eq!(v.all("exclude"), vec!["x", "y"]);
        assert_eq!(v.used_sorted(), vec!["exclude", "from", "link"]);
    }

    #[test]
    fn errors() {
        let copy = allowed_flags(Keyword::Copy);
        assert_eq!(
            parse_flags(copy, &flags(&["--mount=x"])),
            Err(FlagError::Unknown(0))
        );
        assert_eq!(
            parse_flags(copy, &flags(&["--from"])),
            Err(FlagError::MissingValue(0))
        );
        assert_eq!(
            parse_flags(copy, &flags(&["--link=yes"])),
            Err(FlagError::NotBool(0))
        );
        assert_eq!(
            parse_flags(copy, &flags(&["--from=a", "--from=b"])),
            Err(FlagError::Duplicate(1))
        );
    }
}
