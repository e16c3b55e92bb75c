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

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::git_env::{GitAuth, auth_hint, git_command};
use crate::options::{NamedContextSource, SecretSpec, SshSpec};

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

/// One checkout's `git`: the isolated environment of [`super::git_env`].
struct Git<'a> {
    home: PathBuf,
    url: &'a str,
    auth: &'a GitAuth,
}

impl Git<'_> {
    fn run(&self, args: &[&str], cwd: Option<&Path>) -> anyhow::Result<String> {
        let mut c = git_command(&self.home, self.url, self.auth);
        c.args(args);
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        let out = c.output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!("ADD of a git repository needs the git command; install git")
            } else {
                anyhow::anyhow!("running git: {}", crate::io_reason(&e))
            }
        })?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let hint = auth_hint(self.url, self.auth)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            bail!("git {}: {said}{hint}", args.first().copied().unwrap_or(""));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// Checks `src` out under `into` (a fresh directory), authenticating with
/// `auth` only.
pub fn checkout(
    src: &GitSource,
    into: &Path,
    keep_git_dir: bool,
    auth: &GitAuth,
) -> anyhow::Result<Checkout> {
    if let Some(r) = src.reference.as_deref().filter(|r| r.starts_with('-')) {
        bail!("{}#{r}: a git ref cannot start with '-'", src.url);
    }
    let home = into.join("home");
    std::fs::create_dir_all(&home).context("making the checkout's home")?;
    let git = Git {
        home,
        url: &src.url,
        auth,
    };
    let repo = into.join("repo");
    let repo_s = repo.display().to_string();
    let mut shallow = vec!["clone", "--quiet", "--depth", "1", "--no-tags"];
    if let Some(r) = &src.reference {
        shallow.extend(["--branch", r.as_str()]);
    }
    shallow.extend(["--", src.url.as_str(), repo_s.as_str()]);
    if git.run(&shallow, None).is_err() {
        // A commit, or a server without shallow clones (dumb HTTP).
        let _ = std::fs::remove_dir_all(&repo);
        git.run(
            &["clone", "--quiet", "--no-checkout", "--", &src.url, &repo_s],
            None,
        )
        .with_context(|| format!("cloning {}", src.url))?;
        let target = src.reference.as_deref().unwrap_or("HEAD");
        git.run(&["checkout", "--quiet", "--detach", target], Some(&repo))
            .with_context(|| format!("checking out {target} of {}", src.url))?;
    }
    let commit = git.run(&["rev-parse", "HEAD"], Some(&repo))?;
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

/// Checks out every git repository among `named` (`--build-context
/// name=URL`) into a directory under `scratch`, which then stands for it;
/// the directories live as long as the returned handles.
pub fn checkout_named(
    named: &mut BTreeMap<String, NamedContextSource>,
    scratch: &Path,
    secrets: &[SecretSpec],
    ssh: &[SshSpec],
) -> anyhow::Result<Vec<tempfile::TempDir>> {
    let mut kept = Vec::new();
    for (name, source) in named.iter_mut() {
        let NamedContextSource::Git(src) = source else {
            continue;
        };
        let dir = tempfile::Builder::new()
            .prefix("context-git-")
            .tempdir_in(scratch)?;
        let auth = GitAuth::for_remote(&src.url, secrets, ssh)?;
        let co = checkout(src, dir.path(), false, &auth)
            .with_context(|| format!("--build-context {name}={}", src.url))?;
        *source = NamedContextSource::Dir(co.dir);
        kept.push(dir);
    }
    Ok(kept)
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

    /// Runs `git` for a test's own set-up (not through the checkout's
    /// isolated environment).
    fn setup_git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.email=t@t", "-c", "user.name=t"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A repository with tag v1 ("one") and a later commit ("two"), as a
    /// bare repository ready for dumb HTTP; and the first commit.
    fn two_commit_repo(t: &Path) -> (PathBuf, String) {
        let w = t.join("work");
        std::fs::create_dir_all(w.join("sub")).unwrap();
        setup_git(&w, &["init", "--quiet"]);
        std::fs::write(w.join("sub/a.txt"), "one").unwrap();
        setup_git(&w, &["add", "."]);
        setup_git(&w, &["commit", "--quiet", "-m", "one"]);
        let first = setup_git(&w, &["rev-parse", "HEAD"]);
        setup_git(&w, &["tag", "v1"]);
        std::fs::write(w.join("sub/a.txt"), "two").unwrap();
        setup_git(&w, &["commit", "--quiet", "-am", "two"]);
        let bare = t.join("srv/src.git");
        setup_git(t, &["clone", "--quiet", "--bare", "work", "srv/src.git"]);
        setup_git(&bare, &["update-server-info"]);
        (bare, first)
    }

    /// Serves the files under `root` over plain HTTP on loopback (what
    /// git's dumb HTTP transport reads); returns the base URL.
    fn serve_dir(root: PathBuf) -> String {
        use std::io::{BufRead as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                // A static server ignores the query (git's smart-HTTP probe
                // then gets info/refs and falls back to the dumb protocol).
                let target = line.split_whitespace().nth(1).unwrap_or("/");
                let path = target.split('?').next().unwrap_or("/").to_string();
                let mut h = String::new();
                while reader.read_line(&mut h).unwrap_or(0) > 2 {
                    h.clear();
                }
                let file = root.join(path.trim_start_matches('/'));
                let _ = match std::fs::read(&file).ok().filter(|_| !path.contains("..")) {
                    Some(b) => conn
                        .write_all(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())
                                .as_bytes(),
                        )
                        .and_then(|_| conn.write_all(&b)),
                    None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn a_repository_over_http_checks_out_at_a_tag_a_commit_and_its_head() {
        let t = tempfile::tempdir().unwrap();
        let (bare, first) = two_commit_repo(t.path());
        let url = format!(
            "{}/src.git",
            serve_dir(bare.parent().unwrap().to_path_buf())
        );
        let at_first = format!("#{first}");
        for (frag, want) in [("#v1", "one"), (at_first.as_str(), "one"), ("#", "two")] {
            let into = tempfile::tempdir().unwrap();
            let src = GitSource::parse(&format!("{url}{frag}:sub"));
            let co = checkout(&src, into.path(), false, &GitAuth::default()).unwrap();
            assert_eq!(
                std::fs::read_to_string(co.dir.join("a.txt")).unwrap(),
                want,
                "{frag}"
            );
            assert!(!into.path().join("repo/.git").exists());
        }
    }

    #[test]
    fn local_paths_and_file_urls_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let (bare, _) = two_commit_repo(t.path());
        for url in [
            format!("file://{}", bare.display()),
            bare.display().to_string(),
        ] {
            let into = tempfile::tempdir().unwrap();
            let src = GitSource::parse(&url);
            let err = checkout(&src, into.path(), false, &GitAuth::default())
                .expect_err("a host path is not a remote");
            let text = format!("{err:#}");
            assert!(
                text.contains("transport 'file' not allowed"),
                "{url}: {text}"
            );
            assert!(!into.path().join("repo/sub/a.txt").exists());
        }
        let src = GitSource::parse("https://x.invalid/r.git#--upload-pack=touch");
        let err = checkout(&src, t.path(), false, &GitAuth::default()).unwrap_err();
        assert!(err.to_string().contains("cannot start with '-'"), "{err}");
    }
}
