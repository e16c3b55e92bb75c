//! Which context files one COPY/ADD reads, and where each lands.
//!
//! Only the files a source list names are ever visited (a directory source is
//! walked, a wildcard lists the directories its fixed prefix names), minus
//! what `.dockerignore` and `--exclude` remove. Nothing copies or stats the
//! rest of the context, so a `COPY app.sh /` in a 300 MiB context reads one
//! file.
//!
//! Destination rules follow Docker: a directory source copies its *contents*;
//! several sources (or a wildcard) need a destination ending in `/`; a single
//! file source copied to a path without a trailing `/` takes that name.
//! `--parents` keeps each source's path below the context root (or below a
//! `/./` pivot in the source).
//!
//! Symlinks: a source path (and each wildcard match) is resolved inside the
//! context as if it were `/` ([`super::resolve`]), so a link never leads to
//! a host file; the destination keeps the name the source was written
//! with. Inside a copied directory, links are copied as links.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::dockerignore::Matcher;
use super::pattern::{Glob, clean};
use super::resolve::{Resolved, resolve};
use super::walk::{entry_for, read_xattrs, recorded_owner, walk_dir};

/// What one COPY/ADD asks for, with the destination already made absolute
/// (WORKDIR applied) by the caller.
#[derive(Debug, Clone)]
pub struct CopySpec {
    pub sources: Vec<String>,
    pub dest: String,
    /// `--exclude` patterns, matched relative to each source.
    pub excludes: Vec<String>,
    /// `--parents`.
    pub parents: bool,
}

impl CopySpec {
    pub fn new(sources: Vec<String>, dest: &str) -> CopySpec {
        CopySpec {
            sources,
            dest: dest.to_string(),
            excludes: Vec::new(),
            parents: false,
        }
    }
}

/// What a context entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(String),
    /// A named pipe: copied as one, as Docker does.
    Fifo,
}

/// The stat fields that tell whether a file changed since it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub mode: u32,
}

impl StatKey {
    pub fn of(md: &std::fs::Metadata) -> StatKey {
        StatKey {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
            mode: md.mode(),
        }
    }
}

/// One selected file, directory or symlink.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path in the context, slash-separated, relative to the context root.
    pub rel: String,
    /// Absolute path inside the image (`/app/x`).
    pub dest: String,
    pub kind: EntryKind,
    /// Permission and special bits (`st_mode & 0o7777`) as on the host.
    pub host_mode: u32,
    pub stat: StatKey,
    /// Extended attributes worth keeping (`user.*`, `security.capability`).
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The owner as the tree shows it: the one a rootless unpack recorded
    /// in `user.rootlesscontainers`, else the on-disk ids. Meaningful for a
    /// tree read inside the build's user namespace (`COPY --from`), where
    /// on-disk ids are container ids; a copy from the context ignores it.
    pub owner: (u32, u32),
    /// Whether `owner` came from a `user.rootlesscontainers` record.
    pub owner_recorded: bool,
    /// A file the instruction names itself (or a wildcard matched), not one
    /// found inside a named directory: the only files ADD unpacks.
    pub named_source: bool,
}

impl Entry {
    /// The mode a cache key sees: the host's bits minus group/other write.
    /// Those two bits are what a umask changes between a laptop (022) and a
    /// CI checkout (002), and the same sources must hit the cache from
    /// either. The image itself gets the full host mode, as Docker keeps it
    /// (see [`Entry::image_mode`]); so a hit made under the other umask
    /// carries that build's group/other write bits — the one place a hit
    /// and a rebuild may differ, by design.
    pub fn key_mode(&self) -> u32 {
        self.host_mode & !0o022
    }

    /// The mode the image gets: the host's, as Docker copies it.
    /// `--chmod` overrides it.
    pub fn image_mode(&self) -> u32 {
        self.host_mode
    }
}

/// The selected entries of one COPY/ADD, sorted by destination.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub entries: Vec<Entry>,
}

/// What a selected entry carries besides its stat, read with a syscall or
/// two per entry (`llistxattr`, `lgetxattr`): kept in the checksum index
/// so that a rebuild reads it again only for entries whose stat changed
/// (setting an xattr moves ctime, which the stat key holds).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtraMeta {
    /// See [`Entry::xattrs`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The owner recorded in `user.rootlesscontainers`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_owner: Option<(u32, u32)>,
}

/// Selects the entries of `spec` from `context`, skipping what `ignore`
/// excludes.
pub fn select(context: &Path, ignore: &Matcher, spec: &CopySpec) -> anyhow::Result<Selection> {
    select_known(context, ignore, spec, &|_, _| None)
}

/// [`select`], taking each entry's [`ExtraMeta`] from `known` (context
/// path, stat → what was read when the entry last had that stat) where it
/// knows it, and reading it from the disk otherwise.
pub fn select_known(
    context: &Path,
    ignore: &Matcher,
    spec: &CopySpec,
    known: &dyn Fn(&str, &StatKey) -> Option<ExtraMeta>,
) -> anyhow::Result<Selection> {
    let mut sel = select_stat_only(context, ignore, spec)?;
    fill_extra_meta(context, &mut sel.entries, known)?;
    Ok(sel)
}

/// Fills in the xattrs and recorded owners of `entries`: from `known`, or
/// read for the entries it does not know. Sequential: `COPY --from`
/// selects in a forked child, where a thread pool's workers do not exist.
fn fill_extra_meta(
    context: &Path,
    entries: &mut [Entry],
    known: &dyn Fn(&str, &StatKey) -> Option<ExtraMeta>,
) -> anyhow::Result<()> {
    entries.iter_mut().try_for_each(|e| {
        let m = match known(&e.rel, &e.stat) {
            Some(m) => m,
            None => read_extra_meta(&join_rel(context, &e.rel))?,
        };
        e.xattrs = m.xattrs;
        if let Some(o) = m.recorded_owner {
            e.owner = o;
            e.owner_recorded = true;
        }
        anyhow::Ok(())
    })
}

/// Reads what [`ExtraMeta`] holds from the entry at `abs`.
fn read_extra_meta(abs: &Path) -> anyhow::Result<ExtraMeta> {
    Ok(ExtraMeta {
        xattrs: read_xattrs(abs),
        recorded_owner: recorded_owner(abs)?,
    })
}

/// The entries of `spec`, stat only: no xattrs yet, the on-disk owner.
fn select_stat_only(
    context: &Path,
    ignore: &Matcher,
    spec: &CopySpec,
) -> anyhow::Result<Selection> {
    if spec.sources.is_empty() {
        bail!("COPY/ADD needs at least one source");
    }
    let excludes = Matcher::new(&spec.excludes).map_err(|e| anyhow::anyhow!("--exclude: {e}"))?;
    let dest_is_dir = spec.dest.ends_with('/');
    let has_wildcard = spec.sources.iter().any(|s| is_wildcard(s));
    if (spec.sources.len() > 1 || has_wildcard) && !dest_is_dir && !spec.parents {
        // Docker allows it when the destination already is a directory in
        // the image; we only know the context here, so say exactly what to do.
        bail!(
            "when copying more than one source (or a wildcard) the destination must be a directory ending in '/': write {}/",
            spec.dest
        );
    }
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    for src in &spec.sources {
        let (pivot, rel) = split_pivot(src);
        let (matches, via_link) = expand(context, &rel, ignore)?;
        if matches.is_empty() {
            if is_wildcard(&rel) {
                bail!("no context file matches the source {src:?}");
            }
            if via_link {
                bail!(
                    "{src:?} is not in the build context: it goes through a symbolic link whose target is not in the context (links are resolved inside the context as if it were /, never on the host)"
                );
            }
            bail!(
                "{src:?} is not in the build context (or .dockerignore excludes it): check the path relative to the context directory"
            );
        }
        for m in matches {
            add_match(context, ignore, &excludes, spec, &pivot, &rel, &m, &mut out)?;
        }
    }
    Ok(Selection {
        entries: out.into_values().collect(),
    })
}

/// One source path as named (`named`, for the destination's name) and as
/// resolved inside the context (`real`, the one read).
#[derive(Debug, Clone)]
struct Match {
    named: String,
    real: String,
}

/// Adds the entries one matched source path contributes.
#[allow(clippy::too_many_arguments)]
fn add_match(
    context: &Path,
    ignore: &Matcher,
    excludes: &Matcher,
    spec: &CopySpec,
    pivot: &str,
    rel: &str,
    m: &Match,
    out: &mut BTreeMap<String, Entry>,
) -> anyhow::Result<()> {
    let dest_is_dir = spec.dest.ends_with('/');
    let has_wildcard = spec.sources.iter().any(|s| is_wildcard(s));
    let abs = join_rel(context, &m.real);
    let md = std::fs::symlink_metadata(&abs)
        .with_context(|| format!("cannot stat {}", abs.display()))?;
    if md.file_type().is_symlink() {
        bail!(
            "{} changed into a symbolic link while the build read it",
            abs.display()
        );
    }
    let name = &m.named;
    let base = if spec.parents {
        let keep = name
            .strip_prefix(pivot)
            .unwrap_or(name)
            .trim_start_matches('/');
        join_dest(&spec.dest, keep)
    } else if md.is_dir() {
        spec.dest.trim_end_matches('/').to_string()
    } else if dest_is_dir || spec.sources.len() > 1 || has_wildcard {
        join_dest(&spec.dest, name.rsplit('/').next().unwrap_or(name))
    } else {
        spec.dest.clone()
    };
    let base = if base.is_empty() {
        "/".to_string()
    } else {
        base
    };
    if md.is_dir() {
        // A directory named outright gives the destination its mode; one
        // matched by a wildcard only contributes its contents (Docker
        // flattens `COPY dir/* /d/` one level).
        let with_root = !is_wildcard(rel);
        return walk_dir(context, &m.real, &base, ignore, excludes, with_root, out);
    }
    let leaf = name.rsplit('/').next().unwrap_or(name);
    if excludes.excludes(leaf) {
        return Ok(());
    }
    if let Some(mut e) = entry_for(&abs, &m.real, &base, &md)? {
        e.named_source = true;
        out.insert(e.dest.clone(), e);
    }
    Ok(())
}

/// Whether a source holds Go-glob metacharacters.
pub fn is_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `a/./b/c` → (`a`, `a/b/c`): `--parents` keeps only what follows `/./`.
fn split_pivot(src: &str) -> (String, String) {
    let s = src.trim_start_matches('/');
    if let Some(i) = s.find("/./") {
        let pivot = clean(&s[..i]);
        return (pivot, clean(s));
    }
    (String::new(), clean(s))
}

/// Cleans a source and clamps it inside the context, as BuildKit resolves
/// sources scoped to the context root (`../x` is `x`).
fn scoped(rel: &str) -> String {
    let c = clean(&format!("/{rel}"));
    c.trim_start_matches('/').to_string()
}

pub(super) fn join_rel(context: &Path, rel: &str) -> PathBuf {
    super::resolve::join(context, rel)
}

pub(super) fn join_dest(dest: &str, rel: &str) -> String {
    let d = dest.trim_end_matches('/');
    if rel.is_empty() {
        d.to_string()
    } else {
        format!("{d}/{rel}")
    }
}

/// Expands one source into context paths ("" is the root), segment by
/// segment, so only the directories the pattern names are listed. Every
/// match is resolved inside the context ([`resolve`]): a symlink on the way
/// is followed as if the context were `/`. Also says whether a non-wildcard
/// source was not found because a link led nowhere.
fn expand(context: &Path, src: &str, ignore: &Matcher) -> anyhow::Result<(Vec<Match>, bool)> {
    let rel = scoped(src);
    if !is_wildcard(&rel) {
        let real = match resolve(context, &rel, true)? {
            Resolved::Found(real) => real,
            Resolved::Missing { via_link } => return Ok((Vec::new(), via_link)),
        };
        let excluded = !rel.is_empty() && (ignore.excludes(&rel) || ignore.excludes(&real));
        if excluded && !is_dir(&join_rel(context, &real)) {
            return Ok((Vec::new(), false));
        }
        return Ok((vec![Match { named: rel, real }], false));
    }
    let mut current = vec![Match {
        named: String::new(),
        real: String::new(),
    }];
    for seg in rel.split('/') {
        let mut next = Vec::new();
        for base in &current {
            if !is_wildcard(seg) {
                push_resolved(context, base, seg, &mut next)?;
                continue;
            }
            let glob = Glob::new(seg).map_err(|e| anyhow::anyhow!("source {src:?}: {e}"))?;
            let dir = join_rel(context, &base.real);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names = Vec::new();
            for ent in rd {
                let ent = ent.with_context(|| format!("cannot list {}", dir.display()))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if glob.is_match(&name) {
                    names.push(name);
                }
            }
            for name in names {
                push_resolved(context, base, &name, &mut next)?;
            }
        }
        current = next;
    }
    current.retain(|m| !ignore.excludes(&m.named) && !ignore.excludes(&m.real));
    current.sort_by(|a, b| a.named.cmp(&b.named));
    Ok((current, false))
}

/// Adds `base/name`, resolved inside the context, to `next` if it exists.
fn push_resolved(
    context: &Path,
    base: &Match,
    name: &str,
    next: &mut Vec<Match>,
) -> anyhow::Result<()> {
    let join = |b: &str| {
        if b.is_empty() {
            name.to_string()
        } else {
            format!("{b}/{name}")
        }
    };
    if let Resolved::Found(real) = resolve(context, &join(&base.real), true)? {
        next.push(Match {
            named: join(&base.named),
            real,
        });
    }
    Ok(())
}

fn is_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.is_dir())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("src/sub")).unwrap();
        std::fs::write(p.join("src/a.txt"), "a").unwrap();
        std::fs::write(p.join("src/b.log"), "b").unwrap();
        std::fs::write(p.join("src/sub/c.txt"), "c").unwrap();
        std::fs::write(p.join("top.txt"), "t").unwrap();
        std::fs::write(p.join("huge.bin"), "h").unwrap();
        d
    }

    fn dests(s: &Selection) -> Vec<&str> {
        s.entries.iter().map(|e| e.dest.as_str()).collect()
    }

    #[test]
    fn directory_source_copies_contents() {
        let d = ctx();
        let s = select(
            d.path(),
            &Matcher::default(),
            &CopySpec::new(vec!["src".into()], "/app"),
        )
        .unwrap();
        assert_eq!(
            dests(&s),
            [
                "/app",
                "/app/a.txt",
                "/app/b.log",
                "/app/sub",
                "/app/sub/c.txt"
            ]
        );
    }

    #[test]
    fn single_file_takes_the_destination_name() {
        let d = ctx();
        let s = select(
            d.path(),
            &Matcher::default(),
            &CopySpec::new(vec!["top.txt".into()], "/x/y"),
        )
        .unwrap();
        assert_eq!(dests(&s), ["/x/y"]);
        let s = select(
            d.path(),
            &Matcher::default(),
            &CopySpec::new(vec!["top.txt".into()], "/x/"),
        )
        .unwrap();
        assert_eq!(dests(&s), ["/x/top.txt"]);
    }

    #[test]
    fn wildcards_and_ignores() {
        let d = ctx();
        let ig = Matcher::new(&["**/*.log"]).unwrap();
        let s = select(d.path(), &ig, &CopySpec::new(vec!["src/*".into()], "/o/")).unwrap();
        // `src/sub` matched the wildcard: its contents land in /o.
        assert_eq!(dests(&s), ["/o/a.txt", "/o/c.txt"]);
        assert!(select(d.path(), &ig, &CopySpec::new(vec!["src/*".into()], "/o")).is_err());
    }

    #[test]
    fn ignored_source_is_an_error() {
        let d = ctx();
        let ig = Matcher::new(&["huge.bin"]).unwrap();
        let err = select(d.path(), &ig, &CopySpec::new(vec!["huge.bin".into()], "/")).unwrap_err();
        assert!(err.to_string().contains(".dockerignore"), "{err}");
    }

    #[test]
    fn exclude_and_parents() {
        let d = ctx();
        let mut spec = CopySpec::new(vec!["src/sub/c.txt".into(), "top.txt".into()], "/p/");
        spec.parents = true;
        let s = select(d.path(), &Matcher::default(), &spec).unwrap();
        assert_eq!(dests(&s), ["/p/src/sub/c.txt", "/p/top.txt"]);
        let mut spec = CopySpec::new(vec![".".into()], "/all/");
        spec.excludes = vec!["*.txt".into(), "src/**/*.txt".into()];
        let s = select(d.path(), &Matcher::default(), &spec).unwrap();
        assert_eq!(
            dests(&s),
            [
                "/all",
                "/all/huge.bin",
                "/all/src",
                "/all/src/b.log",
                "/all/src/sub"
            ]
        );
    }

    #[test]
    fn paths_cannot_escape_the_context() {
        let d = ctx();
        let s = select(
            d.path(),
            &Matcher::default(),
            &CopySpec::new(vec!["../../top.txt".into()], "/t"),
        )
        .unwrap();
        assert_eq!(s.entries[0].rel, "top.txt");
    }

    #[test]
    fn a_fifo_is_selected_as_one_and_a_device_refused() {
        let d = ctx();
        let made = std::process::Command::new("mkfifo")
            .arg(d.path().join("pipe"))
            .status()
            .unwrap();
        assert!(made.success());
        let s = select(
            d.path(),
            &Matcher::default(),
            &CopySpec::new(vec!["pipe".into()], "/t/"),
        )
        .unwrap();
        assert_eq!(s.entries.len(), 1);
        assert_eq!(
            (s.entries[0].dest.as_str(), &s.entries[0].kind),
            ("/t/pipe", &EntryKind::Fifo)
        );
        let md = std::fs::metadata("/dev/null").unwrap();
        let err =
            super::super::walk::entry_for(Path::new("/dev/null"), "null", "/n", &md).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not supported yet: copying the device node \"null\" (strata cannot create device nodes in a layer)"
        );
    }
}
