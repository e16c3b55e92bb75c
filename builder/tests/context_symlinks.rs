//! The build context's symlinks never reach the host: a COPY/ADD source is
//! resolved inside the context as if it were `/` (BuildKit's rule), so a
//! link to a host file finds nothing, `..` stops at the context root, and a
//! link inside a copied directory is copied as a link. Every case checks
//! the whole root filesystem tar for the host's bytes.
//!
//! `FROM scratch` only: no registry, no sandbox, so these run in plain
//! `cargo test` too.

mod support;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use support::{Scratch, strata_cmd, unique};

/// Bytes of `/etc/passwd` every Linux host has and no test context holds.
const HOST_PASSWD: &[u8] = b"root:x:0:0:";

struct Case {
    dir: Scratch,
    ctx: PathBuf,
    /// A host file outside the context with a unique marker in it.
    secret: PathBuf,
    marker: String,
}

/// One entry of the built root filesystem.
#[derive(Debug)]
enum Node {
    File(Vec<u8>),
    Dir,
    Link(String),
}

impl Case {
    fn new(dockerfile: &str) -> Case {
        let dir = Scratch::new("ctx-links");
        let ctx = dir.0.join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let marker = format!("HOST-SECRET-{}", unique());
        let secret = dir.0.join("outside/secret.txt");
        std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
        std::fs::write(&secret, &marker).unwrap();
        Case {
            dir,
            ctx,
            secret,
            marker,
        }
    }

    fn file(&self, rel: &str, content: &str) -> &Case {
        let p = self.ctx.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    fn link(&self, rel: &str, target: impl AsRef<Path>) -> &Case {
        let p = self.ctx.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
        self
    }

    /// Builds to a root filesystem tar: the listing, or the error. Either
    /// way no host byte may be in the output.
    fn build(&self) -> Result<BTreeMap<String, Node>, String> {
        let fs = self.dir.0.join("fs.tar");
        let root = self.dir.0.join("root");
        let out = strata_cmd(&root, &["build", "--progress", "plain", "-o"])
            .arg(format!("type=tar,dest={}", fs.display()))
            .arg(&self.ctx)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            assert!(!fs.exists(), "a failed build left {}", fs.display());
            assert!(!stderr.contains(&self.marker), "{stderr}");
            return Err(stderr);
        }
        let bytes = std::fs::read(&fs).unwrap();
        assert!(
            !contains(&bytes, self.marker.as_bytes()),
            "the host file {} reached the image",
            self.secret.display()
        );
        assert!(
            !contains(&bytes, HOST_PASSWD),
            "the host's /etc/passwd reached the image"
        );
        Ok(listing(&bytes))
    }

    fn build_ok(&self) -> BTreeMap<String, Node> {
        self.build()
            .unwrap_or_else(|e| panic!("build failed:\n{e}"))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn listing(tar_bytes: &[u8]) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(tar_bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = format!(
            "/{}",
            e.path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
        );
        let node = match e.header().entry_type() {
            tar::EntryType::Directory => Node::Dir,
            tar::EntryType::Symlink => Node::Link(
                e.link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            _ => {
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                Node::File(b)
            }
        };
        out.insert(p, node);
    }
    out
}

fn text(fs: &BTreeMap<String, Node>, path: &str) -> String {
    match fs.get(path) {
        Some(Node::File(b)) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("{path}: expected a file, found {other:?} in {fs:?}"),
    }
}

fn not_found(err: &str) {
    assert!(
        err.contains("not in the build context") || err.contains("no context file matches"),
        "{err}"
    );
}

#[test]
fn a_link_to_a_host_file_finds_nothing() {
    let c = Case::new("FROM scratch\nCOPY k /x\n");
    c.link("k", &c.secret);
    let err = c
        .build()
        .expect_err("a link out of the context must not copy");
    not_found(&err);
    assert!(err.contains("symbolic link"), "{err}");
}

#[test]
fn a_link_to_root_resolves_inside_the_context() {
    // `root -> /` is the context itself: root/etc/passwd is the context's
    // etc/passwd if it has one, never the host's.
    let c = Case::new("FROM scratch\nCOPY root/etc/passwd /x\n");
    c.link("root", "/");
    not_found(&c.build().expect_err("no etc/passwd in the context"));
    c.file("etc/passwd", "context passwd\n");
    let fs = c.build_ok();
    assert_eq!(text(&fs, "/x"), "context passwd\n");
}

#[test]
fn wildcards_through_a_link_stay_inside() {
    let c = Case::new("FROM scratch\nCOPY root/etc/pass* /w/\n");
    c.link("root", "/");
    not_found(&c.build().expect_err("nothing matches inside the context"));
    c.file("etc/passwd", "context passwd\n");
    let fs = c.build_ok();
    assert_eq!(text(&fs, "/w/passwd"), "context passwd\n");
}

#[test]
fn link_chains_resolve_and_loops_fail() {
    let c = Case::new("FROM scratch\nCOPY a/f.txt /x\nCOPY l1 /y\n");
    c.file("sub/f.txt", "chained\n")
        .file("data.txt", "data\n")
        .link("a", "b")
        .link("b", "/c")
        .link("c", "./sub/")
        .link("l1", "l2")
        .link("l2", "../../data.txt");
    let fs = c.build_ok();
    assert_eq!(text(&fs, "/x"), "chained\n");
    assert_eq!(text(&fs, "/y"), "data\n");

    let c = Case::new("FROM scratch\nCOPY loop1 /x\n");
    c.link("loop1", "loop2").link("loop2", "loop1");
    let err = c.build().expect_err("a link loop must fail");
    assert!(err.contains("too many levels of symbolic links"), "{err}");
}

#[test]
fn a_link_that_leaves_and_reenters_is_resolved_inside() {
    // On the host `../ctx/data.txt` and `<abs ctx>/data.txt` lead back to
    // the context; scoped to the context they name /ctx/data.txt and
    // /<abs path>/data.txt there, which do not exist.
    let c = Case::new("FROM scratch\nCOPY back /x\n");
    c.file("data.txt", "data\n").link("back", "../ctx/data.txt");
    not_found(&c.build().expect_err("../ctx is not inside the context"));

    let c = Case::new("FROM scratch\nCOPY abs /x\n");
    c.file("data.txt", "data\n")
        .link("abs", c.ctx.join("data.txt"));
    not_found(&c.build().expect_err("an absolute host path is not inside"));

    // Leaving through the outside directory and coming back in by name.
    let c = Case::new("FROM scratch\nCOPY via/secret.txt /x\n");
    c.link("via", "../outside");
    not_found(&c.build().expect_err("../outside is not the host's"));
}

#[test]
fn dotdot_in_link_targets_stops_at_the_context_root() {
    let c = Case::new("FROM scratch\nCOPY d/e/up /x\nCOPY d/e/out/secret.txt /y\n");
    c.file("etc/passwd", "context passwd\n")
        .file("outside/secret.txt", "context copy\n")
        .link("d/e/up", "../../../../../../etc/passwd")
        .link("d/e/out", "../../../../outside");
    let fs = c.build_ok();
    assert_eq!(text(&fs, "/x"), "context passwd\n");
    assert_eq!(text(&fs, "/y"), "context copy\n");
}

#[test]
fn add_of_a_link_to_a_host_file_finds_nothing() {
    let c = Case::new("FROM scratch\nADD p /x\n");
    c.link("p", "/etc/passwd");
    not_found(&c.build().expect_err("ADD must not read /etc/passwd"));

    let c = Case::new("FROM scratch\nADD s /x\n");
    c.link("s", &c.secret);
    not_found(&c.build().expect_err("ADD must not read the host file"));
}

#[test]
fn links_inside_a_copied_directory_stay_links() {
    let c = Case::new("FROM scratch\nCOPY dir /d\nCOPY . /all/\n");
    c.file("dir/real.txt", "real\n")
        .link("dir/pw", "/etc/passwd")
        .link("dir/secret", &c.secret)
        .link("dir/root", "/")
        .link("dir/rel", "real.txt");
    let fs = c.build_ok();
    let link = |p: &str| match fs.get(p) {
        Some(Node::Link(t)) => t.clone(),
        other => panic!("{p}: expected a symlink, found {other:?}"),
    };
    assert_eq!(link("/d/pw"), "/etc/passwd");
    assert_eq!(link("/d/secret"), c.secret.to_string_lossy());
    assert_eq!(link("/d/root"), "/");
    assert_eq!(link("/d/rel"), "real.txt");
    assert_eq!(link("/all/dir/root"), "/");
    assert_eq!(text(&fs, "/d/real.txt"), "real\n");
    assert!(!fs.keys().any(|k| k.starts_with("/d/root/")), "{fs:?}");
}

#[test]
fn links_into_the_context_work() {
    let c = Case::new("FROM scratch\nCOPY good /g\nCOPY gooddir/f.txt /f\nCOPY gooddir /gd\n");
    c.file("data.txt", "data\n")
        .file("sub/f.txt", "in sub\n")
        .link("good", "data.txt")
        .link("gooddir", "/sub");
    let fs = c.build_ok();
    assert_eq!(text(&fs, "/g"), "data\n");
    assert_eq!(text(&fs, "/f"), "in sub\n");
    assert_eq!(text(&fs, "/gd/f.txt"), "in sub\n");
}

#[test]
fn a_dockerignore_linked_to_a_host_file_is_not_read() {
    // The host file would exclude `data.txt` if it were read.
    let c = Case::new("FROM scratch\nCOPY data.txt /x\n");
    std::fs::write(&c.secret, "data.txt\n").unwrap();
    c.file("data.txt", "data\n")
        .link(".dockerignore", &c.secret);
    let fs = c.build_ok();
    assert_eq!(text(&fs, "/x"), "data\n");
}
