//! COPY/ADD from a directory on the host (the build context, or a stage's
//! merged root filesystem) and WORKDIR's mkdir, written as layer entries
//! directly: no sandbox process, no staging copy.
//!
//! The caller (the builder's context module) has already chosen the files;
//! this module applies Docker's placement rules:
//!
//! * a file goes to `dest`, or into it when `dest` ends with `/` or is an
//!   existing directory of the image;
//! * a directory's *contents* are copied into `dest`;
//! * several sources need a directory destination (`dest/`, or an existing
//!   directory);
//! * missing parent directories are created (0755, root);
//! * `--chown` (ids already resolved) and `--chmod` apply to everything
//!   copied;
//! * ADD of a local tar archive (plain, gzip or zstd) extracts it into
//!   `dest`.
//!
//! `COPY --from=<stage|image>` reads from that root filesystem's layer
//! directories through the merged view (no mount, no copy): sources are
//! paths inside it, resolved through its symlinks without leaving it, and
//! ownership is kept (Docker's rule for `--from`) unless `--chown`.
//!
//! Destinations are resolved through symlinks of the image (see `lookup`).
//! Planning and the tar are done in the user namespace, where the layer
//! directories (and a stage's subordinate-id files) are readable; the layer
//! is then unpacked into its snapshot directory so the next RUN has it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cache::layer::{Content, Decompressed, Entry, EntryKind, read_entries};
use runtime::diff::LowerView;
use runtime::run_in_userns;

use super::layer_blob::{TarOutcome, write_tar};
use super::lookup::{Found, resolve};
use super::{Engine, LayerResult, LayerStack};

/// One source of a COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyItem {
    /// A source as the instruction names it (after wildcard matching):
    /// placed by Docker's rules relative to [`CopyRequest::dest`].
    Source(PathBuf),
    /// A file, directory or symlink placed exactly at `path` in the image
    /// (for a caller that applied the rules itself). Directories are not
    /// recursed: list their contents too.
    At { host: PathBuf, path: String },
}

/// A COPY or ADD of host files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRequest {
    pub items: Vec<CopyItem>,
    /// The destination as the frontend gives it ([`frontend::FileOp::dest`]):
    /// absolute, a trailing `/` meaning "into this directory".
    pub dest: String,
    /// `--chown`, resolved to ids; `None` is 0:0.
    pub chown: Option<(u32, u32)>,
    /// `--chmod` permission bits, for files and directories.
    pub chmod: Option<u32>,
    /// ADD: extract local tar archives instead of copying them.
    pub unpack_archives: bool,
    /// `COPY --from=<stage|image>`: read the sources from this root
    /// filesystem; item paths are then absolute paths inside it (no
    /// wildcards). `None`: host paths (the build context).
    pub from: Option<LayerStack>,
}

impl CopyRequest {
    /// `COPY <sources...> <dest>` with Docker's placement rules.
    pub fn new(sources: Vec<PathBuf>, dest: &str) -> CopyRequest {
        CopyRequest {
            items: sources.into_iter().map(CopyItem::Source).collect(),
            dest: dest.to_string(),
            chown: None,
            chmod: None,
            unpack_archives: false,
            from: None,
        }
    }

    /// `COPY --from`: `sources` are paths inside `stack`.
    pub fn from_stack(mut self, stack: LayerStack) -> Self {
        self.from = Some(stack);
        self
    }

    pub fn chown(mut self, uid: u32, gid: u32) -> Self {
        self.chown = Some((uid, gid));
        self
    }

    pub fn chmod(mut self, bits: u32) -> Self {
        self.chmod = Some(bits & 0o7777);
        self
    }

    /// ADD semantics for local archives.
    pub fn unpack_archives(mut self, yes: bool) -> Self {
        self.unpack_archives = yes;
        self
    }
}

impl Engine {
    /// COPY/ADD `req` onto `stack`.
    pub fn copy(&self, stack: &LayerStack, req: &CopyRequest) -> anyhow::Result<LayerResult> {
        if req.items.is_empty() {
            anyhow::bail!("COPY to {} has no source files", req.dest);
        }
        let now = self.build_time();
        let source_lowers = match &req.from {
            Some(src) => Some(self.lowers(src)?),
            None => None,
        };
        self.layer_from_plan(stack, |view| {
            let source = source_lowers.map(LowerView::new);
            plan_copy(view, source.as_ref(), req, now)
        })
        .with_context(|| format!("copying to {}", req.dest))
    }

    /// WORKDIR: creates `path` and its missing parents, owned by `owner`
    /// (the current USER), as BuildKit does. If the directory exists the
    /// step changes nothing (an empty layer in the history).
    pub fn mkdir(
        &self,
        stack: &LayerStack,
        path: &str,
        owner: (u32, u32),
    ) -> anyhow::Result<LayerResult> {
        let now = self.build_time();
        self.layer_from_plan(stack, |view| plan_mkdir(view, Path::new(path), owner, now))
            .with_context(|| format!("creating directory {path}"))
    }

    /// Runs `plan` over the merged view of `stack` in the user namespace,
    /// writes its entries as a layer and unpacks that layer as the new top.
    fn layer_from_plan<F>(&self, stack: &LayerStack, plan: F) -> anyhow::Result<LayerResult>
    where
        F: FnOnce(&LowerView) -> Result<Vec<Entry>, String>,
    {
        let lowers = self.lowers(stack)?;
        let tar = self.scratch_tar();
        let epoch = self.opts.source_date_epoch;
        let written = run_in_userns(self.sandbox.mapping(), || -> Result<TarOutcome, String> {
            let entries = plan(&LowerView::new(lowers))?;
            write_tar(entries, &tar, epoch)
        });
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&tar);
                return Err(e.into());
            }
        };
        if written.entries == 0 {
            return Ok(LayerResult::unchanged(stack));
        }
        let (descriptor, diff_id) = self.store_tar(&tar, &written.diff_id)?;
        let new_stack = stack.with_layer(descriptor, diff_id);
        let layer = new_stack
            .layers()
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("internal: a stack with a new layer is empty"))?;
        let dir = self.ensure_layer_dir(&layer)?;
        Ok(LayerResult {
            stack: new_stack,
            layer: Some(layer),
            snapshot_dir: Some(dir),
            empty: false,
        })
    }
}

/// Entries by image path; a later source overwrites an earlier one, as
/// Docker's sequential copy does.
type Plan = BTreeMap<PathBuf, Entry>;

/// How copied metadata is set.
struct Apply {
    chown: Option<(u32, u32)>,
    chmod: Option<u32>,
    /// Keep the source's owner when there is no `--chown` (`--from`);
    /// else 0:0 (the context's owner means nothing in the image).
    keep_owner: bool,
}

/// In the user namespace: the layer entries of a COPY. `source` is the
/// merged view of `--from`'s root filesystem, `None` for host paths.
fn plan_copy(
    view: &LowerView,
    source: Option<&LowerView>,
    req: &CopyRequest,
    now: i64,
) -> Result<Vec<Entry>, String> {
    let into_dir_syntax = req.dest.ends_with('/') || req.dest.ends_with("/.");
    let (dest, found) = resolve(view, Path::new(&req.dest), true)?;
    let sources = req
        .items
        .iter()
        .filter(|i| matches!(i, CopyItem::Source(_)))
        .count();
    let dest_is_dir = into_dir_syntax || found == Found::Dir;
    if sources > 1 && !dest_is_dir {
        return Err(format!(
            "when using COPY with more than one source file, the destination must be a directory and end with a /: {}",
            req.dest
        ));
    }
    let apply = Apply {
        chown: req.chown,
        chmod: req.chmod,
        keep_owner: source.is_some(),
    };
    let mut plan = Plan::new();
    let mut links = HashMap::new();
    for item in &req.items {
        let (host, md) = match (item, source) {
            (CopyItem::At { host, path }, _) => {
                let (host, md) = match source {
                    None => {
                        let md = fs::symlink_metadata(host)
                            .map_err(|e| format!("{}: {e}", host.display()))?;
                        (host.clone(), md)
                    }
                    Some(src) => in_source(src, host, false)?,
                };
                let rel = PathBuf::from(path.trim_start_matches('/'));
                if !rel.as_os_str().is_empty() {
                    add_one(&mut plan, &mut links, &host, rel, &md, &apply)?;
                }
                continue;
            }
            // The source itself is followed if it is a symlink (Docker
            // copies what a top-level symlink points to).
            (CopyItem::Source(host), None) => {
                let md = fs::metadata(host).map_err(|e| format!("{}: {e}", host.display()))?;
                (host.clone(), md)
            }
            (CopyItem::Source(p), Some(src)) => in_source(src, p, true)?,
        };
        if md.is_dir() {
            if found == Found::Other {
                return Err(format!(
                    "cannot copy directory {} to {}: it exists and is not a directory",
                    host.display(),
                    req.dest
                ));
            }
            // A destination directory that does not exist yet takes the
            // source directory's metadata (BuildKit's copy).
            if found == Found::Missing && !dest.as_os_str().is_empty() {
                add_one(&mut plan, &mut links, &host, dest.clone(), &md, &apply)?;
            }
            match (item, source) {
                (CopyItem::Source(p), Some(src)) => {
                    let (rel, _) = resolve(src, p, true)?;
                    add_tree_view(&mut plan, &mut links, src, &rel, &dest, &apply)?;
                }
                _ => add_tree(&mut plan, &mut links, &host, &dest, &apply)?,
            }
        } else if req.unpack_archives && source.is_none() && is_tar_archive(&host) {
            add_archive(&mut plan, &host, &dest, &apply)?;
        } else {
            let target = if dest_is_dir {
                let name = match item {
                    CopyItem::Source(p) => p.file_name(),
                    CopyItem::At { host, .. } => host.file_name(),
                }
                .ok_or_else(|| format!("{} has no file name", host.display()))?;
                dest.join(name)
            } else {
                dest.clone()
            };
            if target.as_os_str().is_empty() {
                return Err(format!("cannot copy file {} over /", host.display()));
            }
            add_one(&mut plan, &mut links, &host, target, &md, &apply)?;
        }
    }
    add_missing_parents(view, &mut plan, now)?;
    Ok(plan.into_values().collect())
}

/// In the user namespace: WORKDIR's directories, or nothing if it exists.
fn plan_mkdir(
    view: &LowerView,
    path: &Path,
    owner: (u32, u32),
    now: i64,
) -> Result<Vec<Entry>, String> {
    let (resolved, found) = resolve(view, path, true)?;
    match found {
        Found::Dir => return Ok(Vec::new()),
        Found::Other => {
            return Err(format!("{} exists and is not a directory", path.display()));
        }
        Found::Missing => {}
    }
    let mut out = Vec::new();
    let mut cur = Some(resolved.as_path());
    while let Some(p) = cur {
        if p.as_os_str().is_empty() {
            break;
        }
        let present = view.lookup(p).map_err(|e| e.to_string())?.is_some();
        if present {
            break;
        }
        out.push(Entry::dir(p).mode(0o755).owner(owner.0, owner.1).mtime(now));
        cur = p.parent();
    }
    Ok(out)
}

/// Adds a directory entry (0755, root) for every ancestor of a planned
/// entry that neither the plan nor the image has.
fn add_missing_parents(view: &LowerView, plan: &mut Plan, now: i64) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut checked = std::collections::HashSet::new();
    for path in plan.keys() {
        let mut cur = path.parent();
        while let Some(p) = cur {
            if p.as_os_str().is_empty() || plan.contains_key(p) || !checked.insert(p.to_path_buf())
            {
                break;
            }
            match view.lookup(p).map_err(|e| e.to_string())? {
                Some(e) if e.metadata.is_dir() => break,
                Some(_) => {
                    return Err(format!(
                        "/{} exists and is not a directory, so /{} cannot be created",
                        p.display(),
                        path.display()
                    ));
                }
                None => missing.push(p.to_path_buf()),
            }
            cur = p.parent();
        }
    }
    for p in missing {
        plan.insert(p.clone(), Entry::dir(p).mode(0o755).owner(0, 0).mtime(now));
    }
    Ok(())
}

/// `dir`'s contents (not `dir` itself) under `dest`, recursively.
fn add_tree(
    plan: &mut Plan,
    links: &mut HashMap<(u64, u64), PathBuf>,
    dir: &Path,
    dest: &Path,
    apply: &Apply,
) -> Result<(), String> {
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("listing {}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("listing {}: {e}", dir.display()))?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let host = child.path();
        let md = fs::symlink_metadata(&host).map_err(|e| format!("{}: {e}", host.display()))?;
        let target = dest.join(child.file_name());
        if md.is_dir() {
            add_one(plan, links, &host, target.clone(), &md, apply)?;
            add_tree(plan, links, &host, &target, apply)?;
        } else {
            add_one(plan, links, &host, target, &md, apply)?;
        }
    }
    Ok(())
}

/// `path` in the merged view `src`, resolved through its symlinks without
/// leaving it: the file that provides it and its metadata.
fn in_source(
    src: &LowerView,
    path: &Path,
    follow_last: bool,
) -> Result<(PathBuf, Metadata), String> {
    let (rel, found) = resolve(src, path, follow_last)?;
    if found == Found::Missing {
        return Err(format!(
            "{}: not found in the source filesystem",
            path.display()
        ));
    }
    let e = src
        .lookup(&rel)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: not found in the source filesystem", path.display()))?;
    Ok((e.path, e.metadata))
}

/// Like [`add_tree`], for directory `rel` of the merged view `src`.
fn add_tree_view(
    plan: &mut Plan,
    links: &mut HashMap<(u64, u64), PathBuf>,
    src: &LowerView,
    rel: &Path,
    dest: &Path,
    apply: &Apply,
) -> Result<(), String> {
    let children = src.read_dir(rel).map_err(|e| e.to_string())?;
    for (name, child) in children {
        let target = dest.join(&name);
        add_one(
            plan,
            links,
            &child.path,
            target.clone(),
            &child.metadata,
            apply,
        )?;
        if child.metadata.is_dir() {
            add_tree_view(plan, links, src, &rel.join(&name), &target, apply)?;
        }
    }
    Ok(())
}

/// One file system object as an entry at `rel`.
fn add_one(
    plan: &mut Plan,
    links: &mut HashMap<(u64, u64), PathBuf>,
    host: &Path,
    rel: PathBuf,
    md: &Metadata,
    apply: &Apply,
) -> Result<(), String> {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        let id = (md.dev(), md.ino());
        match links.get(&id) {
            Some(first) if md.nlink() > 1 && plan.contains_key(first) => {
                EntryKind::Hardlink(first.clone())
            }
            _ => {
                if md.nlink() > 1 {
                    links.insert(id, rel.clone());
                }
                EntryKind::File(Content::Path(host.to_path_buf()))
            }
        }
    } else if ft.is_symlink() {
        EntryKind::Symlink(
            fs::read_link(host).map_err(|e| format!("reading link {}: {e}", host.display()))?,
        )
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = (libc::major(md.rdev()), libc::minor(md.rdev()));
        if ft.is_char_device() {
            EntryKind::CharDevice { major, minor }
        } else {
            EntryKind::BlockDevice { major, minor }
        }
    } else {
        // Sockets have no tar representation; Docker skips them too.
        return Ok(());
    };
    let mode = match (apply.chmod, &kind) {
        (_, EntryKind::Symlink(_)) => 0o777,
        (Some(bits), _) => bits,
        (None, _) => md.mode() & 0o7777,
    };
    let (uid, gid) = match apply.chown {
        Some(ids) => ids,
        None if apply.keep_owner => source_owner(host, md)?,
        None => (0, 0),
    };
    let mut e = Entry::new(&rel, kind)
        .mode(mode)
        .owner(uid, gid)
        .mtime(md.mtime());
    if !ft.is_symlink() {
        e.meta.xattrs = copied_xattrs(host)?;
    }
    plan.insert(rel, e);
    Ok(())
}

/// The owner of a file of a layer directory: its ids, or the ones the
/// unpacker recorded when it could not chown (single id mapping).
fn source_owner(host: &Path, md: &Metadata) -> Result<(u32, u32), String> {
    if md.file_type().is_symlink() {
        return Ok((md.uid(), md.gid()));
    }
    match xattr::get(host, cache::layer::ROOTLESS_XATTR) {
        Ok(Some(v)) => {
            let r =
                cache::layer::Record::decode(&v).map_err(|e| format!("{}: {e}", host.display()))?;
            Ok((r.uid, r.gid))
        }
        _ => Ok((md.uid(), md.gid())),
    }
}

/// The xattrs a copy keeps: not overlayfs' bookkeeping, not our ownership
/// records, not SELinux labels (they belong to the host).
fn copied_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing xattrs of {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("user.overlay.")
            || name.starts_with("trusted.")
            || name == cache::layer::ROOTLESS_XATTR
            || name == "security.selinux"
        {
            continue;
        }
        if let Ok(Some(v)) = xattr::get(path, name) {
            out.push((name.to_string(), v));
        }
    }
    Ok(out)
}

/// Whether `path` is a tar archive (plain, gzip or zstd): the `ustar` magic
/// at offset 257 of the decompressed stream. Anything else is copied as a
/// file, as Docker does with files it cannot extract.
fn is_tar_archive(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    let Ok((mut r, _)) = Decompressed::new(f) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return false,
        }
    }
    got == 512 && &head[257..262] == b"ustar"
}

/// ADD's extraction: the archive's entries under `dest`, owners from the
/// archive unless `--chown`.
fn add_archive(plan: &mut Plan, host: &Path, dest: &Path, apply: &Apply) -> Result<(), String> {
    let f = File::open(host).map_err(|e| format!("{}: {e}", host.display()))?;
    let (entries, _) =
        read_entries(f).map_err(|e| format!("extracting {}: {e}", host.display()))?;
    for mut e in entries {
        if matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque) {
            continue;
        }
        let rel = e.path.strip_prefix("/").unwrap_or(&e.path).to_path_buf();
        if rel.as_os_str().is_empty() || rel == Path::new(".") {
            continue;
        }
        if let EntryKind::Hardlink(t) = &e.kind {
            e.kind = EntryKind::Hardlink(dest.join(t));
        }
        if let Some((uid, gid)) = apply.chown {
            e.meta.uid = uid;
            e.meta.gid = gid;
        }
        let path = dest.join(&rel);
        e.path = path.clone();
        plan.insert(path, e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn view_with(setup: impl FnOnce(&Path)) -> (tempfile::TempDir, LowerView) {
        let t = tempfile::tempdir().expect("tmp");
        let low = t.path().join("low");
        fs::create_dir_all(&low).expect("mkdir");
        setup(&low);
        let v = LowerView::new(vec![low]);
        (t, v)
    }

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.path.display().to_string())
            .collect()
    }

    #[test]
    fn docker_placement_rules() {
        let (_t, view) = view_with(|low| {
            fs::create_dir_all(low.join("etc")).expect("mkdir");
        });
        let src = tempfile::tempdir().expect("src");
        let f = src.path().join("f.txt");
        fs::write(&f, "hello").expect("write");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).expect("chmod");
        let d = src.path().join("d");
        fs::create_dir_all(d.join("sub")).expect("mkdir");
        fs::write(d.join("sub/x"), "x").expect("write");

        // file → file (parents created 0755 root)
        let e = plan_copy(
            &view,
            None,
            &CopyRequest::new(vec![f.clone()], "/a/b/new.txt"),
            7,
        )
        .expect("plan");
        assert_eq!(paths(&e), ["a", "a/b", "a/b/new.txt"]);
        assert_eq!((e[0].meta.mode, e[0].meta.uid), (0o755, 0));
        assert_eq!(e[2].meta.mode, 0o600);

        // file → existing dir without slash, and → dir/ with chown+chmod
        let e =
            plan_copy(&view, None, &CopyRequest::new(vec![f.clone()], "/etc"), 7).expect("plan");
        assert_eq!(paths(&e), ["etc/f.txt"]);
        let req = CopyRequest::new(vec![f.clone()], "/new/")
            .chown(1000, 1000)
            .chmod(0o640);
        let e = plan_copy(&view, None, &req, 7).expect("plan");
        assert_eq!(paths(&e), ["new", "new/f.txt"]);
        assert_eq!(
            (e[1].meta.mode, e[1].meta.uid, e[1].meta.gid),
            (0o640, 1000, 1000)
        );

        // dir → its contents
        let e =
            plan_copy(&view, None, &CopyRequest::new(vec![d.clone()], "/etc/"), 7).expect("plan");
        assert_eq!(paths(&e), ["etc/sub", "etc/sub/x"]);
        let e =
            plan_copy(&view, None, &CopyRequest::new(vec![d.clone()], "/made"), 7).expect("plan");
        assert_eq!(paths(&e), ["made", "made/sub", "made/sub/x"]);

        // several sources need a directory
        let err = plan_copy(&view, None, &CopyRequest::new(vec![f.clone(), d], "/x"), 7)
            .expect_err("refused");
        assert!(err.contains("must be a directory"), "{err}");
    }

    #[test]
    fn copy_from_a_layer_stack_reads_the_merged_view_inside_it() {
        let (_t, view) = view_with(|_| {});
        let src = tempfile::tempdir().expect("src");
        let (top, low) = (src.path().join("top"), src.path().join("low"));
        fs::create_dir_all(low.join("opt/real/d")).expect("mkdir");
        fs::write(low.join("opt/real/d/old"), "old").expect("write");
        fs::write(low.join("opt/real/d/gone"), "gone").expect("write");
        fs::create_dir_all(top.join("opt/real/d")).expect("mkdir");
        fs::write(top.join("opt/real/d/new"), "new").expect("write");
        std::os::unix::fs::symlink("/opt/real", top.join("linked")).expect("symlink");
        // A symlink that would leave the root on the host stays inside.
        std::os::unix::fs::symlink("/../../../../etc", top.join("esc")).expect("symlink");
        let gone = std::ffi::CString::new(
            top.join("opt/real/d/gone")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("cstring");
        // A whiteout (0/0 char device) needs privilege: only checked as root.
        // SAFETY: mknod on a valid NUL-terminated path.
        let whiteout = unsafe { libc::mknod(gone.as_ptr(), libc::S_IFCHR, 0) } == 0;
        let source = LowerView::new(vec![top.clone(), low.clone()]);
        let req = CopyRequest::new(vec![PathBuf::from("/linked/d")], "/out/");
        let e = plan_copy(&view, Some(&source), &req, 7).expect("plan");
        let mut want = vec!["out", "out/new", "out/old"];
        if !whiteout {
            want.insert(1, "out/gone");
        }
        assert_eq!(paths(&e), want);
        let owner = fs::metadata(low.join("opt/real/d/old")).expect("stat");
        let old = e
            .iter()
            .find(|e| e.path == Path::new("out/old"))
            .expect("old");
        assert_eq!((old.meta.uid, old.meta.gid), (owner.uid(), owner.gid()));
        let req = CopyRequest::new(vec![PathBuf::from("/esc/passwd")], "/x");
        let err = plan_copy(&view, Some(&source), &req, 7).expect_err("confined");
        assert!(err.contains("not found in the source"), "{err}");
    }

    #[test]
    fn add_extracts_local_tar_archives() {
        let (_t, view) = view_with(|_| {});
        let src = tempfile::tempdir().expect("src");
        let archive = src.path().join("a.tar.gz");
        let entries = vec![
            Entry::dir("top").mode(0o750).owner(5, 6),
            Entry::file("top/file", Content::Bytes(b"data".to_vec())).owner(5, 6),
        ];
        let opts = cache::layer::WriteOptions {
            compression: cache::layer::Compression::Gzip { level: 1 },
            ..Default::default()
        };
        cache::layer::write_layer(entries, &opts, File::create(&archive).expect("create"))
            .expect("write");
        assert!(is_tar_archive(&archive));
        let req = CopyRequest::new(vec![archive.clone()], "/opt/").unpack_archives(true);
        let e = plan_copy(&view, None, &req, 7).expect("plan");
        assert_eq!(paths(&e), ["opt", "opt/top", "opt/top/file"]);
        assert_eq!((e[1].meta.mode, e[1].meta.uid), (0o750, 5));
        // COPY never extracts.
        let e = plan_copy(&view, None, &CopyRequest::new(vec![archive], "/opt/"), 7).expect("plan");
        assert_eq!(paths(&e), ["opt", "opt/a.tar.gz"]);
    }

    #[test]
    fn mkdir_folds_into_nothing_when_the_directory_exists() {
        let (_t, view) = view_with(|low| fs::create_dir_all(low.join("w")).expect("mkdir"));
        assert!(
            plan_mkdir(&view, Path::new("/w"), (0, 0), 1)
                .expect("plan")
                .is_empty()
        );
        let e = plan_mkdir(&view, Path::new("/w/x/y"), (1000, 1000), 1).expect("plan");
        let mut p = paths(&e);
        p.sort();
        assert_eq!(p, ["w/x", "w/x/y"]);
        assert!(e.iter().all(|e| e.meta.uid == 1000 && e.meta.mode == 0o755));
    }
}
