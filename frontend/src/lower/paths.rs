//! POSIX path arithmetic for container paths (Go's `path.Join` /
//! `path.Clean`), used for WORKDIR chains, COPY destinations and mount
//! targets. Container paths are always `/`-separated, whatever the host.

/// Lexically cleans `p`: removes `.`, resolves `..`, collapses slashes.
/// The result is absolute when `p` is; `..` never climbs above `/`.
pub(crate) fn clean(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `rel` resolved against the absolute directory `base` (an absolute `rel`
/// wins), cleaned.
pub(crate) fn join(base: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        clean(rel)
    } else {
        clean(&format!("/{base}/{rel}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_and_joining() {
        assert_eq!(clean("/a//b/./c/.."), "/a/b");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(join("/app", "src"), "/app/src");
        assert_eq!(join("/app", "/etc"), "/etc");
        assert_eq!(join("", "x"), "/x");
        assert_eq!(join("/a/b", "../c"), "/a/c");
    }
}
