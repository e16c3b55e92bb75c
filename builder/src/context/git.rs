//! `ADD <git repository> <dest>`: the repository's tree at a ref, copied
//! into `dest` as a directory, as BuildKit does.
//!
//! Sources: `https://host/repo.git[#ref[:subdir]]`, `git@host:repo.git`,
//! `git://…` and `ssh://…`. The checkout is done by the host's `git`
//! (there is no Rust git client that speaks every transport and auth
//! helper the way users' setups expect): a shallow clone of the ref when
//! the server allows it, else a full clone and a checkout — so a branch, a
//! tag or a commit all work. `.git` is left out unless `--keep-git-dir`.
//! Modes are normalised to what git records (0644, 0755 for executables,
//! 0755 directories), so the host's umask never reaches the image.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

impl GitSource {
    /// The frontend's reading of `URL#ref:subdir` (`frontend::source`).
    pub fn parse(src: &str) -> GitSource {
        GitSource::from(frontend::source::git_ref(src))
    }
}

impl From<frontend::source::GitRef> for GitSource {
    fn from(g: frontend::source::GitRef) -> GitSource {
        GitSource {
            url: g.repository,
            reference: g.reference,
            subdir: g.subdir,
        }
    }
}

/// A checkout: the directory to copy from and the commit it holds.
#[derive(Debug)]
pub struct Checkout {
    pub dir: PathBuf,
    pub commit: String,
}

fn git(args: &[&str], cwd: Option<&Path>) -> anyhow::Result<String> {
    let mut c = Command::new("git");
    c.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let out = c.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("ADD of a git repository needs the git command; install git")
        } else {
            anyhow::anyhow!("running git: {e}")
        }
    })?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Checks `src` out under `into` (a fresh directory).
pub fn checkout(src: &GitSource, into: &Path, keep_git_dir: bool) -> anyhow::Result<Checkout> {
    let repo = into.join("repo");
    let repo_s = repo.display().to_string();
    let mut shallow = vec!["clone", "--quiet", "--depth", "1", "--no-tags"];
    if let Some(r) = &src.reference {
        shallow.extend(["--branch", r.as_str()]);
    }
    shallow.extend([src.url.as_str(), repo_s.as_str()]);
    if git(&shallow, None).is_err() {
        // A commit, or a server without shallow clones (dumb HTTP).
        let _ = std::fs::remove_dir_all(&repo);
        git(
            &["clone", "--quiet", "--no-checkout", &src.url, &repo_s],
            None,
        )
        .with_context(|| format!("cloning {}", src.url))?;
        let target = src.reference.as_deref().unwrap_or("HEAD");
        git(&["checkout", "--quiet", "--detach", target], Some(&repo))
            .with_context(|| format!("checking out {target} of {}", src.url))?;
    }
    let commit = git(&["rev-parse", "HEAD"], Some(&repo))?;
    if !keep_git_dir {
        std::fs::remove_dir_all(repo.join(".git")).context("removing .git from the checkout")?;
    }
    normalise_modes(&repo)?;
    let dir = match &src.subdir {
        None => repo,
        Some(d) => {
            let sub = repo.join(d.trim_matches('/'));
            if !sub.starts_with(&repo) || d.split('/').any(|p| p == "..") || !sub.is_dir() {
                bail!("{}: no directory {d:?} at {commit}", src.url);
            }
            sub
        }
    };
    Ok(Checkout { dir, commit })
}

/// 0644/0755 files and 0755 directories, as git records them.
fn normalise_modes(root: &Path) -> anyhow::Result<()> {
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e?;
        let ft = e.file_type();
        let mode = if ft.is_dir() {
            0o755
        } else if ft.is_file() {
            let exec = e.metadata()?.permissions().mode() & 0o111 != 0;
            if exec { 0o755 } else { 0o644 }
        } else {
            continue;
        };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_like_buildkit() {
        assert_eq!(
            GitSource::parse("https://x.org/r.git#v1:sub/dir"),
            GitSource {
                url: "https://x.org/r.git".into(),
                reference: Some("v1".into()),
                subdir: Some("sub/dir".into()),
            }
        );
        assert_eq!(GitSource::parse("git@x.org:o/r.git").reference, None);
    }

    #[test]
    fn a_local_repository_checks_out_at_a_tag_and_a_commit() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("src.git");
        let w = |args: &[&str]| git(args, Some(&r)).unwrap();
        std::fs::create_dir(&r).unwrap();
        w(&["init", "--quiet"]);
        w(&["config", "user.email", "t@t"]);
        w(&["config", "user.name", "t"]);
        std::fs::create_dir(r.join("sub")).unwrap();
        std::fs::write(r.join("sub/a.txt"), "one").unwrap();
        w(&["add", "."]);
        w(&["commit", "--quiet", "-m", "one"]);
        let first = w(&["rev-parse", "HEAD"]);
        w(&["tag", "v1"]);
        std::fs::write(r.join("sub/a.txt"), "two").unwrap();
        w(&["commit", "--quiet", "-am", "two"]);
        let url = format!("file://{}", r.display());
        let at_first = format!("#{first}");
        for (frag, want) in [("#v1", "one"), (at_first.as_str(), "one"), ("#", "two")] {
            let into = tempfile::tempdir().unwrap();
            let src = GitSource::parse(&format!("{url}{frag}:sub"));
            let co = checkout(&src, into.path(), false).unwrap();
            assert_eq!(
                std::fs::read_to_string(co.dir.join("a.txt")).unwrap(),
                want,
                "{frag}"
            );
            assert!(!into.path().join("repo/.git").exists());
        }
    }
}
