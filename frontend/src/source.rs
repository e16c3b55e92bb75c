//! What an `ADD` source is, told from its text alone (pure, no I/O): a path
//! of the build context, a file to download over HTTP(S), or a git
//! repository at a ref and subdirectory. The builder plans each kind as
//! the source it is and never looks at the text again.

/// A git repository `ADD` checks out: `URL#ref:subdir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    pub repository: String,
    /// A branch, tag or commit (`#ref`); the default branch when `None`.
    pub reference: Option<String>,
    /// The directory of the checkout to copy (`#ref:dir`); all of it when
    /// `None`.
    pub subdir: Option<String>,
}

/// What one `ADD` source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddSource {
    /// A path of the build context.
    Local,
    /// A URL to download (`scheme://…` that is not a git repository).
    Http,
    Git(GitRef),
}

/// Tells what an `ADD` source names, as BuildKit does: `git://…`,
/// `ssh://…`, `user@host:path` and `http(s)://…` whose path ends in `.git`
/// are git repositories; other `scheme://…` are downloads (only http and
/// https are fetched; `file://` is refused there); anything else is a path
/// of the context, `.git` or not (`ADD /srv/repo.git /x` reads the
/// context's `srv/repo.git`, never the host's).
pub fn classify(src: &str) -> AddSource {
    if is_git(src) {
        AddSource::Git(git_ref(src))
    } else if src.contains("://") {
        AddSource::Http
    } else {
        AddSource::Local
    }
}

/// Whether a source is a git repository.
pub fn is_git(src: &str) -> bool {
    let base = src.split('#').next().unwrap_or("");
    match base.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "git" | "ssh" => true,
            "http" | "https" => {
                let path = rest.split(['?']).next().unwrap_or("");
                path.ends_with(".git") || path.ends_with(".git/")
            }
            _ => false,
        },
        None => is_scp_style(base),
    }
}

/// `user@host:path`, git's scp-like ssh syntax (no scheme, no `/` before
/// the `:`).
fn is_scp_style(s: &str) -> bool {
    let Some((user_host, path)) = s.split_once(':') else {
        return false;
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return false;
    };
    !user.is_empty() && !host.is_empty() && !path.is_empty() && !user_host.contains('/')
}

/// A git source's repository, ref and subdirectory (`URL#ref:subdir`).
pub fn git_ref(src: &str) -> GitRef {
    let (url, fragment) = match src.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (src, None),
    };
    let (reference, subdir) = match fragment {
        None => (None, None),
        Some(f) => match f.split_once(':') {
            Some((r, d)) => (Some(r.to_string()), Some(d.to_string())),
            None => (Some(f.to_string()), None),
        },
    };
    GitRef {
        repository: url.to_string(),
        reference: reference.filter(|r| !r.is_empty()),
        subdir: subdir.filter(|d| !d.trim_matches('/').is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_by_their_text() {
        assert!(is_git("git@x.org:o/r.git") && is_git("https://x.org/r.git#main"));
        assert!(!is_git("https://x.org/file.tar.gz"));
        assert_eq!(classify("https://x.org/file.tar.gz"), AddSource::Http);
        assert_eq!(classify("dir/file"), AddSource::Local);
        assert_eq!(
            classify("https://x.org/r.git#v1:sub/dir"),
            AddSource::Git(GitRef {
                repository: "https://x.org/r.git".into(),
                reference: Some("v1".into()),
                subdir: Some("sub/dir".into()),
            })
        );
        assert_eq!(git_ref("git@x.org:o/r.git#:/").subdir, None);
    }

    #[test]
    fn host_paths_are_never_git_repositories() {
        for git in [
            "git://x.org/r",
            "ssh://git@x.org/r",
            "deploy@x.org:team/r.git",
            "HTTP://x.org/r.git/#main",
        ] {
            assert!(is_git(git), "{git}");
        }
        for local in ["/srv/r.git", "../r.git", "r.git", "dir/r.git", "C:/r.git"] {
            assert!(!is_git(local), "{local}");
            assert_eq!(classify(local), AddSource::Local, "{local}");
        }
        assert_eq!(classify("file:///srv/r.git"), AddSource::Http);
        assert!(!is_git("https://x.org/r.tar.gz?x=.git"));
    }

    #[test]
    fn remote_sources_are_told_apart() {
        let remote = |s: &str| classify(s) != AddSource::Local;
        assert!(remote("https://x.org/f") && remote("git@x.org:o/r.git"));
        assert!(!remote("./f"));
    }
}
