//! `strata check` and `strata build --check`: BuildKit's build checks from
//! the command line, on a directory or a Dockerfile path, with the
//! context's `.dockerignore`, `# check=error=true` failing, and nothing
//! built.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn lint_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/lint"))
}

/// `(Rule, line)` of every warning line `strata` printed.
fn findings(out: &Output) -> Vec<(String, usize)> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .map(|l| {
            // file:line:col: Rule: message
            let mut parts = l.splitn(4, ':');
            let _file = parts.next();
            let line = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let _col = parts.next();
            let rule = parts
                .next()
                .and_then(|r| r.trim().split(':').next())
                .unwrap_or("")
                .to_string();
            (rule, line)
        })
        .collect()
}

/// The 22 findings of all-rules.Dockerfile less InvalidBaseImagePlatform,
/// which needs the base image's real platform (not known offline).
fn expected_offline() -> Vec<(String, usize)> {
    [
        ("StageNameCasing", 10),
        ("WorkdirRelativePath", 11),
        ("UndefinedVar", 12),
        ("LegacyKeyValueFormat", 13),
        ("ConsistentInstructionCasing", 14),
        ("FromAsCasing", 16),
        ("MultipleInstructionsDisallowed", 17),
        ("JSONArgsRecommended", 18),
        ("MaintainerDeprecated", 19),
        ("DuplicateStageName", 23),
        ("NoEmptyContinuation", 24),
        ("ReservedStageName", 28),
        ("SecretsUsedInArgOrEnv", 29),
        ("ExposeProtoCasing", 30),
        ("ExposeInvalidFormat", 31),
        ("UndefinedArgInFrom", 33),
        ("RedundantTargetPlatform", 35),
        ("FromPlatformFlagConstDisallowed", 37),
        ("InvalidDefaultArgInFrom", 39),
        ("CopyIgnoredFile", 42),
        ("InvalidDefinitionDescription", 45),
    ]
    .into_iter()
    .map(|(r, l)| (r.to_string(), l))
    .collect()
}

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(STRATA)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("strata runs")
}

#[test]
fn check_takes_a_directory_or_a_dockerfile() {
    let dir = lint_dir();
    let by_dir = run(
        &[
            "check",
            ".",
            "-f",
            "all-rules.Dockerfile",
            "--build-arg",
            "IMG=busybox",
            "--platform",
            "linux/amd64",
        ],
        &dir,
    );
    assert!(by_dir.status.success(), "{by_dir:?}");
    assert_eq!(findings(&by_dir), expected_offline());
    let stderr = String::from_utf8_lossy(&by_dir.stderr);
    assert!(
        stderr.ends_with("Check complete, 21 warnings have been found!\n"),
        "{stderr}"
    );
    let by_file = run(
        &[
            "check",
            "all-rules.Dockerfile",
            "--build-arg",
            "IMG=busybox",
            "--platform",
            "linux/amd64",
        ],
        &dir,
    );
    assert!(by_file.status.success(), "{by_file:?}");
    assert_eq!(findings(&by_file), expected_offline());
}

#[test]
fn error_true_fails_check_and_build_check_with_buildkits_message() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("Dockerfile"),
        "# check=error=true\nFROM scratch\nMAINTAINER me\nCMD echo hi\n",
    )
    .unwrap();
    for args in [
        vec!["check", "."],
        vec!["check", "Dockerfile"],
        vec!["--root", "root", "build", "--check", "."],
    ] {
        let out = run(&args, tmp.path());
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(
            findings(&out),
            vec![
                ("MaintainerDeprecated".to_string(), 3),
                ("JSONArgsRecommended".to_string(), 4)
            ]
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.ends_with("error: lint violation found for rules: MaintainerDeprecated, JSONArgsRecommended (the Dockerfile sets # check=error=true)\n"),
            "{stderr}"
        );
    }
}

#[test]
fn build_check_runs_the_rules_without_building() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS Base\nCOPY notes.md /\n",
    )
    .unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.md\n").unwrap();
    std::fs::write(ctx.join("notes.md"), "x").unwrap();
    let root = tmp.path().join("root");
    let out = Command::new(STRATA)
        .arg("--root")
        .arg(&root)
        .args(["build", "--check", "-t", "checkonly:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        findings(&out),
        vec![
            ("StageNameCasing".to_string(), 1),
            ("CopyIgnoredFile".to_string(), 2)
        ]
    );
    assert!(out.stdout.is_empty(), "no image id: {out:?}");
    // Nothing was built: the store was never even created.
    assert!(!root.exists(), "build --check wrote {}", root.display());
}

#[test]
fn build_prints_findings_as_warnings_and_fails_only_under_error_true() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let root = tmp.path().join("root");
    let build = |dockerfile: &str| {
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        Command::new(STRATA)
            .arg("--root")
            .arg(&root)
            .args(["build", "--progress", "plain", "-t", "checkwarn:1"])
            .arg(&ctx)
            .output()
            .unwrap()
    };
    let out = build("FROM scratch\nMAINTAINER me\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        findings(&out),
        vec![("MaintainerDeprecated".to_string(), 2)]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning: warning:"), "{stderr}");
    let out = build("# check=error=true\nFROM scratch\nMAINTAINER me\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lint violation found for rules: MaintainerDeprecated"),
        "{stderr}"
    );
}

/// The architecture strata builds for here, and one it does not.
fn native_and_foreign_arch() -> (&'static str, &'static str) {
    if cfg!(target_arch = "x86_64") {
        ("amd64", "arm64")
    } else {
        ("arm64", "amd64")
    }
}

/// A docker-archive holding one image whose config names another
/// architecture: one empty layer (1024 zero bytes, the well-known
/// empty-tar diff_id).
fn foreign_platform_archive(path: &Path, arch: &str) {
    const EMPTY: &str = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{EMPTY}"]}}}}"#
    );
    let manifest = r#"[{"Config":"config.json","RepoTags":["foreign:1"],"Layers":["layer.tar"]}]"#;
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    add("layer.tar", &[0u8; 1024]);
    add("config.json", config.as_bytes());
    add("manifest.json", manifest.as_bytes());
    b.finish().unwrap();
}

#[test]
fn a_base_image_of_another_platform_is_reported() {
    let (native, foreign) = native_and_foreign_arch();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let archive = tmp.path().join("foreign.tar");
    foreign_platform_archive(&archive, foreign);
    let from = format!("docker-archive:{}", archive.display());
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {from}\n")).unwrap();
    let out = Command::new(STRATA)
        .arg("--root")
        .arg(tmp.path().join("root"))
        .args(["build", "--progress", "plain", "-t", "foreign-check:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        findings(&out),
        vec![("InvalidBaseImagePlatform".to_string(), 1)]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "Base image {from} was pulled with platform \"linux/{foreign}\", expected \"linux/{native}\" for current build"
    );
    assert!(stderr.contains(&want), "{stderr}");
}
