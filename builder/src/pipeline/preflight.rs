//! What can be checked before the first step runs: that the store root and
//! every file or directory the build will write (`-o dest=`, `--iidfile`,
//! `--metadata-file`) can be written. A build that would fail at its very
//! end after minutes of work fails at once instead, naming the flag.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::options::{BuildRequest, OutputKind, OutputSpec};

/// Whether this process may create entries in `dir` (`access(W_OK|X_OK)`,
/// which also sees a read-only mount).
fn writable_dir(dir: &Path) -> Result<(), io::Error> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path we own.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `path` if it exists, else its nearest existing ancestor (what
/// `create_dir_all` would create entries in).
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = if path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        path.to_path_buf()
    };
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    p
}

/// A file the build writes at its end: its directory must exist and be
/// writable, and the path must not be a directory.
fn check_file(label: &str, path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!("{label}: is a directory; give a file name");
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{label}: the directory {} does not exist; create it first",
            dir.display()
        );
    }
    if let Err(e) = writable_dir(dir) {
        bail!(
            "{label}: cannot write in {} ({}); choose a place you can write",
            dir.display(),
            crate::io_reason(&e)
        );
    }
    Ok(())
}

/// A directory the build creates or fills (`type=local`, the store).
fn check_dir(label: &str, path: &Path, hint: &str) -> anyhow::Result<()> {
    let at = existing_ancestor(path);
    if !at.is_dir() {
        bail!("{label}: {} is not a directory", at.display());
    }
    if let Err(e) = writable_dir(&at) {
        bail!(
            "{label}: cannot write in {} ({}); {hint}",
            at.display(),
            crate::io_reason(&e)
        );
    }
    Ok(())
}

/// Every check, in the order the flags are usually written.
pub(super) fn check(req: &BuildRequest) -> anyhow::Result<()> {
    check_paths(
        &req.root,
        &req.outputs,
        req.iidfile.as_deref(),
        req.metadata_file.as_deref(),
    )
}

fn check_paths(
    root: &Path,
    outputs: &[OutputSpec],
    iidfile: Option<&Path>,
    metadata_file: Option<&Path>,
) -> anyhow::Result<()> {
    check_dir(
        &format!("--root {}", root.display()),
        root,
        "pass --root DIR (or set STRATA_ROOT) to a directory you can write",
    )?;
    // An existing store must be writable inside too (a read-only copy).
    for sub in ["tmp", "locks", "blobs/sha256"] {
        let p = root.join(sub);
        if p.is_dir()
            && let Err(e) = writable_dir(&p)
        {
            bail!(
                "--root {}: cannot write in {} ({}); pass --root DIR (or set STRATA_ROOT) to a store you can write",
                root.display(),
                p.display(),
                crate::io_reason(&e)
            );
        }
    }
    for o in outputs {
        let Some(dest) = o.dest.as_deref().filter(|d| *d != Path::new("-")) else {
            continue;
        };
        match o.kind {
            OutputKind::Local => {
                check_dir(
                    &format!("--output dest={}", dest.display()),
                    dest,
                    "choose a directory you can write",
                )?;
                // What the export refuses at the end, refused now.
                if std::fs::read_dir(dest).is_ok_and(|mut d| d.next().is_some()) {
                    return Err(crate::output::local_dir::not_empty(dest));
                }
            }
            OutputKind::Docker | OutputKind::Oci | OutputKind::Tar => {
                check_file(&format!("--output dest={}", dest.display()), dest)?
            }
            OutputKind::Image | OutputKind::Registry => {}
        }
    }
    if let Some(p) = iidfile {
        check_file(&format!("--iidfile {}", p.display()), p)?;
    }
    if let Some(p) = metadata_file {
        check_file(&format!("--metadata-file {}", p.display()), p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reasons_lose_the_os_error_number() {
        assert_eq!(
            crate::io_reason(&io::Error::from_raw_os_error(libc::EACCES)),
            "Permission denied"
        );
    }

    #[test]
    fn files_need_an_existing_directory() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("no/such/out.tar");
        assert_eq!(
            check_file("--iidfile X", &missing).unwrap_err().to_string(),
            format!(
                "--iidfile X: the directory {} does not exist; create it first",
                t.path().join("no/such").display()
            )
        );
        assert!(check_file("--iidfile X", &t.path().join("ok")).is_ok());
        assert!(check_dir("--root", &t.path().join("a/b"), "x").is_ok());
    }

    #[test]
    fn a_local_output_must_be_new_or_empty() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("old"), "x").unwrap();
        let req_dest = t.path().to_path_buf();
        let o: crate::options::OutputSpec = format!("type=local,dest={}", req_dest.display())
            .parse()
            .unwrap();
        assert_eq!(
            check_paths(&t.path().join("root"), &[o], None, None)
                .unwrap_err()
                .to_string(),
            format!(
                "--output type=local,dest={}: the directory is not empty; give a new or empty directory, or remove it first (rm -rf {}). An export killed midway never leaves files there: it writes beside it and renames when done",
                req_dest.display(),
                req_dest.display()
            )
        );
    }
}
