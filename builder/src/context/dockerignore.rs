//! `.dockerignore`: which context paths a build may never see.
//!
//! Follows moby/patternmatcher, the matcher BuildKit and Docker use: the file
//! is read into an ordered pattern list (comments, BOM, whitespace, leading
//! `/` cleaned), `!` marks an exception, and a path is excluded when the last
//! pattern that applies to it — or to any of its parent directories — is a
//! plain pattern. `<Dockerfile>.dockerignore` next to the Dockerfile replaces
//! the context's `.dockerignore`, as in BuildKit (`dockerui/config.go`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::pattern::{BadPattern, Glob, clean};

/// A malformed ignore file or pattern, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreError {
    /// A `!` with nothing after it.
    LoneBang,
    Bad(BadPattern),
}

impl fmt::Display for IgnoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreError::LoneBang => write!(
                f,
                "illegal exclusion pattern \"!\": a '!' must be followed by the path to re-include"
            ),
            IgnoreError::Bad(b) => b.fmt(f),
        }
    }
}

impl std::error::Error for IgnoreError {}

/// Splits an ignore file into its ordered pattern list, the way
/// `ignorefile.ReadAll` does (the list may still hold a lone `!`, which
/// [`Matcher::new`] rejects).
pub fn parse_ignore_file(content: &str) -> Vec<String> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut out = Vec::new();
    for raw in content.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.starts_with('#') {
            continue;
        }
        let mut p = line.trim();
        if p.is_empty() {
            continue;
        }
        let invert = p.starts_with('!');
        if invert {
            p = p[1..].trim();
        }
        let mut cleaned = String::new();
        if !p.is_empty() {
            cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        out.push(if invert {
            format!("!{cleaned}")
        } else {
            cleaned
        });
    }
    out
}

#[derive(Debug, Clone)]
struct Rule {
    glob: Glob,
    exception: bool,
    /// Number of `/`-separated segments, for the legacy parent rule.
    depth: usize,
}

/// An ordered list of ignore patterns, ready to test paths against.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    rules: Vec<Rule>,
}

impl Matcher {
    /// Builds a matcher from patterns as a `.dockerignore` or `--exclude`
    /// gives them: trimmed, cleaned, `!` split off, then validated.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher, IgnoreError> {
        let mut rules = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let exception = p.starts_with('!');
            if exception {
                if p.len() == 1 {
                    return Err(IgnoreError::LoneBang);
                }
                p.remove(0);
            }
            let glob = Glob::new(&p).map_err(IgnoreError::Bad)?;
            let depth = p.split('/').count();
            rules.push(Rule {
                glob,
                exception,
                depth,
            });
        }
        Ok(Matcher { rules })
    }

    /// No patterns at all: nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any `!` exception exists; without one, an excluded directory
    /// can be skipped whole instead of walked.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `path` (slash-separated, relative to the context root) is
    /// excluded: the current Docker semantics, where a pattern applies when
    /// it matches the path or any of its parent directories.
    pub fn excludes(&self, path: &str) -> bool {
        self.excludes_in(&self.in_dir(&go_dir(path)), path)
    }

    /// Which rules match directory `dir` (cleaned, `.` or empty for the root) or
    /// one of its parents: computed once for all the paths of a directory
    /// ([`Matcher::excludes_in`]) instead of once per path.
    pub fn in_dir(&self, dir: &str) -> DirRules {
        let parents: Vec<&str> = if dir == "." || dir.is_empty() {
            Vec::new()
        } else {
            dir.split('/').collect()
        };
        DirRules(
            self.rules
                .iter()
                .map(|r| (1..=parents.len()).any(|n| r.glob.is_match(&parents[..n].join("/"))))
                .collect(),
        )
    }

    /// [`Matcher::excludes`] for a `path` whose parent directory's rules
    /// are `dir` (from [`Matcher::in_dir`]).
    pub fn excludes_in(&self, dir: &DirRules, path: &str) -> bool {
        let mut matched = false;
        for (r, parent_hit) in self.rules.iter().zip(&dir.0) {
            if r.exception != matched {
                continue;
            }
            if *parent_hit || r.glob.is_match(path) {
                matched = !r.exception;
            }
        }
        matched
    }

    /// The deprecated `Matches` semantics (only the parent with as many
    /// segments as the pattern is tried). Not used for builds; kept so the
    /// conformance corpus can exercise the pattern language through both of
    /// Docker's entry points.
    pub fn excludes_legacy(&self, path: &str) -> bool {
        let path = clean(path);
        let parent = go_dir(&path);
        let parents: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for r in &self.rules {
            if r.exception != matched {
                continue;
            }
            let mut hit = r.glob.is_match(&path);
            if !hit && parent != "." && r.depth <= parents.len() {
                hit = r.glob.is_match(&parents[..r.depth].join("/"));
            }
            if hit {
                matched = !r.exception;
            }
        }
        matched
    }
}

/// Which rules of a [`Matcher`] match a directory or one of its parents.
#[derive(Debug, Clone, Default)]
pub struct DirRules(Vec<bool>);

/// Go's `filepath.Dir`: everything before the last `/`, cleaned.
fn go_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".to_string(),
    }
}

/// Where the ignore patterns of a build come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreSource {
    /// `<Dockerfile>.dockerignore` next to the Dockerfile.
    DockerfileSpecific(PathBuf),
    /// `.dockerignore` at the context root.
    Context(PathBuf),
    None,
}

/// Loads the ignore patterns for a build: `<dockerfile>.dockerignore` if it
/// exists (it wins), else `<context>/.dockerignore`, else nothing. A
/// Dockerfile read from stdin has no name, so only the context's file counts.
pub fn load_for_build(
    context: &Path,
    dockerfile: Option<&Path>,
) -> anyhow::Result<(Matcher, IgnoreSource)> {
    let mut candidates = Vec::new();
    if let Some(df) = dockerfile
        && let Some(name) = df.file_name()
    {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        candidates.push(IgnoreSource::DockerfileSpecific(df.with_file_name(n)));
    }
    // The context's own file is resolved inside the context, like every
    // context path: a `.dockerignore` linked to a host file reads nothing.
    if let super::resolve::Resolved::Found(real) =
        super::resolve::resolve(context, ".dockerignore", true)?
    {
        candidates.push(IgnoreSource::Context(super::resolve::join(context, &real)));
    }
    for c in candidates {
        let path = match &c {
            IgnoreSource::DockerfileSpecific(p) | IgnoreSource::Context(p) => p.clone(),
            IgnoreSource::None => continue,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let m = Matcher::new(&parse_ignore_file(&text))
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                return Ok((m, c));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        }
    }
    Ok((Matcher::default(), IgnoreSource::None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_patterns_win_and_parents_count() {
        let m = Matcher::new(&["docs", "!docs/README.md"]).unwrap();
        assert!(m.excludes("docs/other.md"));
        assert!(!m.excludes("docs/README.md"));
        assert!(m.excludes("docs"));
    }

    #[test]
    fn lone_bang_is_refused() {
        assert_eq!(Matcher::new(&["!"]).unwrap_err(), IgnoreError::LoneBang);
    }

    #[test]
    fn dockerfile_specific_file_wins() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".dockerignore"), "foo\n").unwrap();
        std::fs::write(d.path().join("Dockerfile2.dockerignore"), "bar\n").unwrap();
        let (m, src) = load_for_build(d.path(), Some(&d.path().join("Dockerfile2"))).unwrap();
        assert!(matches!(src, IgnoreSource::DockerfileSpecific(_)));
        assert!(m.excludes("bar") && !m.excludes("foo"));
        let (m, src) = load_for_build(d.path(), Some(&d.path().join("Dockerfile"))).unwrap();
        assert!(matches!(src, IgnoreSource::Context(_)));
        assert!(m.excludes("foo") && !m.excludes("bar"));
    }
}
