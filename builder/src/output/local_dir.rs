//! `--output type=local,dest=DIR`: the merged root filesystem as a
//! directory, all or nothing.
//!
//! The tree is unpacked into a hidden sibling, `.DIR.strata-partial-PID`,
//! and renamed onto `DIR` only when complete (a rename onto an empty
//! directory replaces it). A build killed midway therefore leaves `DIR` as
//! it was; the next export to the same place removes partial siblings
//! whose process is gone. A `DIR` that already holds files is refused with
//! what to do, never merged into.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use cache::store::Store;

/// The marker in a partial sibling's name, before the writer's pid.
const PARTIAL: &str = "strata-partial-";

/// Writes `layers` merged into `dest`.
pub fn write_local(
    store: &Store,
    executor: &crate::ops::exec::Executor,
    layers: &[crate::ops::Layer],
    dest: &Path,
) -> anyhow::Result<()> {
    if !is_empty_or_missing(dest) {
        return Err(not_empty(dest));
    }
    let Some(name) = dest.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        // `.` or `/`: an existing empty directory, written in place.
        return crate::ops::file::materialize_into(store, executor, layers, dest);
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    remove_stale_partials(&parent, &name);
    let tmp = parent.join(format!(".{name}.{PARTIAL}{}", std::process::id()));
    let _ = runtime::snapshot::remove_tree(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let done = crate::ops::file::materialize_into(store, executor, layers, &tmp).and_then(|()| {
        std::fs::rename(&tmp, dest).map_err(|e| {
            anyhow!(
                "--output type=local,dest={}: cannot move the finished tree into place ({}); is the directory still empty?",
                dest.display(),
                e.kind()
            )
        })
    });
    if done.is_err() {
        let _ = runtime::snapshot::remove_tree(&tmp);
    }
    done
}

/// The refusal of a destination that holds files: what to do, and that a
/// killed export is not the cause. The preflight check says the same.
pub fn not_empty(dest: &Path) -> anyhow::Error {
    anyhow!(
        "--output type=local,dest={}: the directory is not empty; give a new or empty directory, or remove it first (rm -rf {}). An export killed midway never leaves files there: it writes beside it and renames when done",
        dest.display(),
        dest.display()
    )
}

fn is_empty_or_missing(dest: &Path) -> bool {
    match std::fs::read_dir(dest) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Removes `.NAME.strata-partial-PID` siblings whose writer is gone.
fn remove_stale_partials(parent: &Path, name: &str) {
    let prefix = format!(".{name}.{PARTIAL}");
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for ent in rd.flatten() {
        let file = ent.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&prefix) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .map(|p| Path::new(&format!("/proc/{p}")).exists())
            .unwrap_or(true);
        if !alive {
            let _ = runtime::snapshot::remove_tree(&ent.path());
        }
    }
}
