//! `--explain-cache`: why a step missed the cache.
//!
//! For every step the builder records the facts its key was made of, as
//! named strings: `instruction`, `arg:NAME`, `env:NAME`, `base`, `input:N`,
//! `context:/dest/path` (one per selected file: its content digest and mode)
//! and so on. The record is stored per *step identity* (which Dockerfile,
//! which stage, which step), so on the next build the same step can be
//! compared with its last run: a miss is explained by the facts that
//! changed, appeared or disappeared. Records are small JSON files under
//! `<root>/index/explain/`, written atomically. The value of a variable
//! whose name looks like a secret (BuildKit's `SecretsUsedInArgOrEnv`
//! words) is kept only as a digest ([`recorded_value`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The facts behind one step's cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub key: String,
    pub facts: BTreeMap<String, String>,
}

/// Why a step ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// The step never ran before with this identity.
    FirstRun,
    /// `--no-cache` or `--no-cache-filter`.
    Disabled,
    /// These facts differ from the last run (name, before, after).
    Changed(Vec<(String, Option<String>, Option<String>)>),
    /// Same facts, yet the result is gone (pruned store).
    ResultMissing,
}

impl MissReason {
    /// One line for progress output, naming what changed in a user's terms.
    pub fn describe(&self) -> String {
        match self {
            MissReason::FirstRun => "first build of this step".into(),
            MissReason::Disabled => "cache disabled (--no-cache / --no-cache-filter)".into(),
            MissReason::ResultMissing => {
                "same inputs, but the cached result was removed from the store".into()
            }
            MissReason::Changed(diffs) => {
                let parts: Vec<String> = diffs
                    .iter()
                    .take(8)
                    .map(|(n, a, b)| describe_fact(n, a, b))
                    .collect();
                let more = diffs.len().saturating_sub(8);
                let mut s = parts.join("; ");
                if more > 0 {
                    s.push_str(&format!("; and {more} more"));
                }
                s
            }
        }
    }
}

fn describe_fact(name: &str, before: &Option<String>, after: &Option<String>) -> String {
    let (kind, what) = name.split_once(':').unwrap_or((name, ""));
    let verb = match (before, after) {
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        _ => "changed",
    };
    match kind {
        "instruction" => format!(
            "the instruction text changed (was {:?})",
            before.as_deref().unwrap_or("")
        ),
        "arg" => format!("build arg {what} {verb}"),
        "env" => format!("environment variable {what} {verb}"),
        "base" => format!(
            "the base image digest changed ({} -> {})",
            before.as_deref().unwrap_or("none"),
            after.as_deref().unwrap_or("none")
        ),
        "input" => "an earlier step it builds on changed".to_string(),
        "context" => format!("context file {what} {verb}"),
        other => format!("{other} {what} {verb}"),
    }
}

/// The words of a variable name that mark it as a secret, and the one that
/// clears it: the words of BuildKit's `SecretsUsedInArgOrEnv` rule, matched
/// as a whole `_`-separated word, case-insensitively (`GITHUB_TOKEN`,
/// `api_key`, `AUTH`; not `MONKEY`, not `PUBLIC_KEY`). Stricter than the
/// build check (`frontend::lint::syntax::looks_secret`, which also clears
/// `file` and `version`): a record redacts `KEY_FILE` too, since hiding a
/// value costs only a clearer `--explain-cache`. The solver may not use the
/// frontend, hence the second list.
const SECRET_WORDS: &[&str] = &[
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
const NOT_SECRET_WORDS: &[&str] = &["public"];

/// Whether a build arg or environment variable name looks like it may hold
/// a secret (see `SECRET_WORDS`).
pub fn looks_secret(name: &str) -> bool {
    let has = |words: &[&str]| {
        name.split('_')
            .any(|w| words.iter().any(|s| w.eq_ignore_ascii_case(s)))
    };
    has(SECRET_WORDS) && !has(NOT_SECRET_WORDS)
}

/// The value a record keeps for the variable `name`: the value itself, or
/// for a name that looks secret only a digest of it. Records are plain
/// files under the store; a token passed as `--build-arg GITHUB_TOKEN=…`
/// must not sit there in clear. The digest still tells that it changed.
pub fn recorded_value(name: &str, value: &str) -> String {
    if looks_secret(name) {
        format!("redacted:{}", blake3::hash(value.as_bytes()).to_hex())
    } else {
        value.to_string()
    }
}

/// Compares a step's facts with its last run.
pub fn explain(previous: Option<&StepRecord>, current: &StepRecord) -> MissReason {
    let Some(prev) = previous else {
        return MissReason::FirstRun;
    };
    let mut diffs = Vec::new();
    for (k, v) in &current.facts {
        match prev.facts.get(k) {
            Some(p) if p == v => {}
            p => diffs.push((k.clone(), p.cloned(), Some(v.clone()))),
        }
    }
    for (k, v) in &prev.facts {
        if !current.facts.contains_key(k) {
            diffs.push((k.clone(), Some(v.clone()), None));
        }
    }
    if diffs.is_empty() {
        return MissReason::ResultMissing;
    }
    // An earlier step changing explains everything after it; say the
    // step's own changes first.
    diffs.sort_by_key(|(k, _, _)| k.starts_with("input:"));
    MissReason::Changed(diffs)
}

/// The most context files an exported record names one by one.
pub const MAX_PORTABLE_FILES: usize = 5000;

impl StepRecord {
    /// The record as an exported cache carries it: build-arg and
    /// environment values are replaced by their hash, so a registry cache
    /// does not publish a token someone passed as a build arg, while a
    /// fresh runner can still tell that a value changed (it compares its
    /// own record in this form).
    ///
    /// A step reading more than [`MAX_PORTABLE_FILES`] context files keeps
    /// one combined fact for them, so the exported cache stays small.
    pub fn portable(&self) -> StepRecord {
        let files = self
            .facts
            .keys()
            .filter(|k| k.starts_with("context:"))
            .count();
        let mut combined = blake3::Hasher::new();
        let mut facts: BTreeMap<String, String> = self
            .facts
            .iter()
            .map(|(k, v)| {
                if k.starts_with("arg:") || k.starts_with("env:") {
                    (
                        k.clone(),
                        format!("blake3:{}", blake3::hash(v.as_bytes()).to_hex()),
                    )
                } else {
                    (k.clone(), v.clone())
                }
            })
            .filter(|(k, v)| {
                let fold = files > MAX_PORTABLE_FILES && k.starts_with("context:");
                if fold {
                    combined.update(k.as_bytes());
                    combined.update(v.as_bytes());
                }
                !fold
            })
            .collect();
        if files > MAX_PORTABLE_FILES {
            facts.insert(
                format!("context:({files} files)"),
                combined.finalize().to_hex().to_string(),
            );
        }
        StepRecord {
            key: self.key.clone(),
            facts,
        }
    }
}

/// Where step records live.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    pub fn new(root: &Path) -> RecordStore {
        RecordStore {
            dir: root.join("index/explain"),
        }
    }

    fn path(&self, identity: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.json",
            blake3::hash(identity.as_bytes()).to_hex()
        ))
    }

    /// The last record of a step, if any (an unreadable one counts as none).
    pub fn load(&self, identity: &str) -> Option<StepRecord> {
        std::fs::read(self.path(identity))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Replaces a step's record atomically.
    pub fn save(&self, identity: &str, rec: &StepRecord) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        // Buffered: a COPY's record names every file it copied, and
        // serde_json writes each token on its own.
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut tmp);
        serde_json::to_writer(&mut out, rec)?;
        out.flush()?;
        drop(out);
        tmp.persist(self.path(identity))
            .map_err(|e| anyhow::anyhow!("cannot save a cache record: {}", e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(facts: &[(&str, &str)]) -> StepRecord {
        StepRecord {
            key: String::new(),
            facts: facts
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn names_the_changed_arg_and_file() {
        let before = rec(&[
            ("instruction", "RUN x"),
            ("arg:V", "1"),
            ("context:/a", "d1"),
            ("context:/b", "d2"),
        ]);
        let after = rec(&[
            ("instruction", "RUN x"),
            ("arg:V", "2"),
            ("context:/a", "d1"),
            ("context:/c", "d3"),
        ]);
        let r = explain(Some(&before), &after);
        let text = r.describe();
        assert!(text.contains("build arg V changed"), "{text}");
        assert!(text.contains("context file /c added"), "{text}");
        assert!(text.contains("context file /b removed"), "{text}");
        assert!(!text.contains("/a"), "{text}");
    }

    #[test]
    fn portable_records_hide_values_but_still_tell_changes() {
        let before = rec(&[("arg:TOKEN", "secret1"), ("context:a", "d1")]).portable();
        assert!(!serde_json::to_string(&before).unwrap().contains("secret1"));
        let after = rec(&[("arg:TOKEN", "secret2"), ("context:a", "d1")]).portable();
        assert_eq!(
            explain(Some(&before), &after).describe(),
            "build arg TOKEN changed"
        );
    }

    #[test]
    fn secret_looking_names_are_redacted() {
        for n in [
            "GITHUB_TOKEN",
            "api_key",
            "AUTH",
            "DB_PASSWORD",
            "aws_secret_access_key",
        ] {
            assert!(looks_secret(n), "{n}");
            let v = recorded_value(n, "hunter2");
            assert!(!v.contains("hunter2") && v.starts_with("redacted:"), "{v}");
            assert_eq!(v, recorded_value(n, "hunter2"));
            assert_ne!(v, recorded_value(n, "hunter3"));
        }
        for n in ["MONKEY", "PUBLIC_KEY", "VERSION", "KEYS", "TOKENIZER"] {
            assert!(!looks_secret(n), "{n}");
            assert_eq!(recorded_value(n, "v1"), "v1");
        }
    }

    #[test]
    fn first_run_and_identical_facts() {
        let r = rec(&[("instruction", "RUN x")]);
        assert_eq!(explain(None, &r), MissReason::FirstRun);
        assert_eq!(explain(Some(&r), &r), MissReason::ResultMissing);
    }

    #[test]
    fn records_round_trip_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let s = RecordStore::new(d.path());
        assert!(s.load("step").is_none());
        let r = rec(&[("base", "sha256:1")]);
        s.save("step", &r).unwrap();
        assert_eq!(s.load("step"), Some(r));
    }
}
