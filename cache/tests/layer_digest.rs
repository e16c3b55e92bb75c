//! Determinism and digests: the same input gives the same diff_id and blob
//! digest across runs, thread counts and newer mtimes (SOURCE_DATE_EPOCH),
//! and the digests agree with independent tools (gzip, zstd, sha256sum).

mod layer_support;

use std::path::Path;

use cache::layer::{
    Compression, LayerDescriptor, LayerSource, WriteOptions, write_dir, write_layers,
};
use layer_support::{pseudo_random, sh};

const EPOCH: i64 = 1_700_000_000;

fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("big")).unwrap();
    std::fs::create_dir_all(root.join("small/x")).unwrap();
    // Over two gzip members (8 MiB each) so member boundaries are exercised.
    std::fs::write(root.join("big/blob"), pseudo_random(17 << 20, 3)).unwrap();
    for i in 0..50 {
        std::fs::write(
            root.join(format!("small/x/f{i}")),
            pseudo_random(1000 + i * 37, i as u64),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("../big/blob", root.join("small/link")).unwrap();
}

fn export(
    root: &Path,
    compression: Compression,
    threads: usize,
    zstd_workers: u32,
) -> (LayerDescriptor, Vec<u8>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let o = WriteOptions {
        compression,
        source_date_epoch: Some(EPOCH),
        zstd_workers,
        ..WriteOptions::default()
    };
    let mut blob = Vec::new();
    let desc = pool.install(|| write_dir(root, &o, &mut blob)).unwrap();
    (desc, blob)
}

#[test]
fn same_input_same_digests_across_runs_threads_and_mtimes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("r");
    tree(&root);
    for c in [
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
        Compression::None,
    ] {
        let (a, blob_a) = export(&root, c, 1, 1);
        let (b, blob_b) = export(&root, c, 3, 2);
        assert_eq!(a, b, "{c:?}: 1 vs 3 threads / zstd 1 vs 2 workers");
        assert!(blob_a == blob_b, "{c:?}: blobs differ");
    }
    let (before, _) = export(&root, Compression::Gzip { level: 6 }, 2, 2);
    // Touching files to a time after the epoch changes nothing.
    sh(&format!(
        "touch -d @{} '{}/big/blob' '{}/small/x/f1'",
        EPOCH + 5000,
        root.display(),
        root.display()
    ));
    let (after, _) = export(&root, Compression::Gzip { level: 6 }, 2, 2);
    assert_eq!(before, after);
    // ...while a change of content does change it.
    std::fs::write(root.join("small/x/f1"), b"changed").unwrap();
    let (changed, _) = export(&root, Compression::Gzip { level: 6 }, 2, 2);
    assert_ne!(before.diff_id, changed.diff_id);
    assert_ne!(before.digest, changed.digest);
}

#[test]
fn digests_agree_with_independent_tools() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("r");
    tree(&root);
    for (c, ext, test, cat) in [
        (
            Compression::Gzip { level: 6 },
            "tar.gz",
            "gzip -t",
            "gzip -dc",
        ),
        (
            Compression::Zstd { level: 3 },
            "tar.zst",
            "zstd -q -t",
            "zstd -q -dc",
        ),
    ] {
        let (desc, blob) = export(&root, c, 2, 2);
        let file = t.path().join(format!("layer.{ext}"));
        std::fs::write(&file, &blob).unwrap();
        sh(&format!("{test} '{}'", file.display()));
        let diff = sh(&format!("{cat} '{}' | sha256sum", file.display()));
        assert_eq!(
            format!("sha256:{}", &diff[..64]),
            desc.diff_id.to_string(),
            "{ext}"
        );
        let dig = sh(&format!("sha256sum '{}'", file.display()));
        assert_eq!(
            format!("sha256:{}", &dig[..64]),
            desc.digest.to_string(),
            "{ext}"
        );
        assert_eq!(desc.size, blob.len() as u64);
        // The tarball GNU tar extracts is the tree we wrote.
        let out = t.path().join(format!("x-{ext}"));
        std::fs::create_dir(&out).unwrap();
        sh(&format!(
            "{cat} '{}' | tar -x -C '{}'",
            file.display(),
            out.display()
        ));
        sh(&format!(
            "cmp '{}/big/blob' '{}/big/blob'",
            root.display(),
            out.display()
        ));
        assert_eq!(
            std::fs::read_link(out.join("small/link")).unwrap(),
            Path::new("../big/blob")
        );
    }
}

#[test]
fn a_batch_compresses_several_layers_at_once_with_the_same_results() {
    let t = tempfile::tempdir().unwrap();
    let roots: Vec<_> = (0..3)
        .map(|i| {
            let r = t.path().join(format!("r{i}"));
            std::fs::create_dir_all(&r).unwrap();
            std::fs::write(
                r.join("data"),
                pseudo_random((9 << 20) + i * 1000, i as u64 + 1),
            )
            .unwrap();
            r
        })
        .collect();
    let o = WriteOptions {
        compression: Compression::Gzip { level: 6 },
        source_date_epoch: Some(EPOCH),
        ..WriteOptions::default()
    };
    let jobs: Vec<_> = roots
        .iter()
        .map(|r| (LayerSource::Dir(r.clone()), Vec::new()))
        .collect();
    // A 2-thread pool: the batch's producers run on the pool's workers
    // while their gzip members are queued on the same pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let batch = pool.install(|| write_layers(jobs, &o));
    assert_eq!(batch.len(), 3);
    for (r, got) in roots.iter().zip(batch) {
        let got = got.unwrap();
        let (alone, _) = export(r, Compression::Gzip { level: 6 }, 1, 1);
        assert_eq!(got, alone, "{}", r.display());
    }
}
