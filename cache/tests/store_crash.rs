//! The store survives SIGKILL at any moment and several processes at once:
//! a child process writes blobs, tags and cache entries in a loop and is
//! killed at a random time; the next open cleans its scratch and
//! `verify` finds nothing wrong.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use cache::digest::Digest;
use cache::gc::verify;
use cache::image::{Descriptor, ManifestFormat, media_type};
use cache::reference::Reference;
use cache::store::Store;

fn config_for(layer: &Digest) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    }))
    .expect("json")
}

fn layer(d: &Digest, len: usize) -> Descriptor {
    Descriptor::new(media_type::OCI_LAYER, d.clone(), len as u64)
}

const CHILD_ENV: &str = "STRATA_TEST_CRASH_CHILD_ROOT";

/// Not a test on its own: the body the child process runs.
#[test]
fn crash_child_body() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(&root).expect("open");
    let tag = Reference::parse("crash/test:latest").expect("ref");
    let mut i: u64 = 0;
    loop {
        // Big enough that kills often land mid-write.
        let data: Vec<u8> = (0..(2 << 20))
            .map(|j| ((j as u64 * 31 + i) % 251) as u8)
            .collect();
        let d = store.blobs().put_bytes(&data, None).expect("put");
        let mut w = store.blobs().writer().expect("writer");
        std::io::Write::write_all(&mut w, &data[..1 << 20]).expect("write");
        let _ = w.commit(None).expect("commit");
        let img = store
            .write_image(
                &config_for(&d),
                &[layer(&d, data.len())],
                ManifestFormat::Oci,
            )
            .expect("image");
        store.tags().set(&tag, &img.manifest_digest).expect("tag");
        store
            .cache_put(&format!("key-{}", i % 7), &i.to_le_bytes())
            .expect("cache");
        i += 1;
    }
}

fn pseudo_random(seed: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 400
}

#[test]
fn sigkill_during_writes_leaves_a_usable_store() {
    let t = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    for round in 0..6u64 {
        let mut children = Vec::new();
        // Two writers at once on the same root.
        for _ in 0..2 {
            children.push(
                Command::new(&exe)
                    .args([
                        "--exact",
                        "crash_child_body",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, t.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn child"),
            );
        }
        std::thread::sleep(Duration::from_millis(100 + pseudo_random(round)));
        for c in &mut children {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
        let store = Store::open(t.path()).expect("open after kill");
        // Only this process's own scratch dir is left.
        let left: Vec<_> = std::fs::read_dir(t.path().join("tmp"))
            .expect("tmp")
            .collect();
        assert_eq!(left.len(), 1, "stale scratch survived: {left:?}");
        let report = verify(&store).expect("verify");
        assert!(report.is_clean(), "round {round}: {:?}", report.problems);
        // Every blob in place is complete.
        for (d, _) in store.blobs().list().expect("list") {
            assert_eq!(store.blobs().verify(&d).expect("verify blob"), None);
        }
        // The tag (if any write got that far) points to a stored blob.
        if let Some(d) = store
            .tags()
            .get(&Reference::parse("crash/test:latest").expect("ref"))
            .expect("tag")
        {
            assert!(store.blobs().has(&d));
        }
    }
}

#[test]
fn concurrent_stores_writing_the_same_things() {
    let t = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
    let expected = Digest::of(&data);
    std::thread::scope(|s| {
        for n in 0..4 {
            let (root, data, expected) = (t.path(), &data, &expected);
            s.spawn(move || {
                let store = Store::open(root).expect("open");
                for i in 0..10 {
                    let (d, _) = store
                        .blobs()
                        .put_stream(&data[..], Some(expected))
                        .expect("put");
                    assert_eq!(&d, expected);
                    let img = store
                        .write_image(
                            &config_for(&d),
                            &[layer(&d, data.len())],
                            ManifestFormat::Oci,
                        )
                        .expect("image");
                    let r = Reference::parse(&format!("app:{}", (n + i) % 3)).expect("ref");
                    store.tags().set(&r, &img.manifest_digest).expect("tag");
                    store
                        .cache_put("shared", format!("{n}").as_bytes())
                        .expect("cache");
                    let v = store.cache_get("shared").expect("get").expect("present");
                    assert_eq!(v.len(), 1, "a reader saw a torn value: {v:?}");
                }
            });
        }
    });
    let store = Store::open(t.path()).expect("open");
    // The layer, one config and one manifest: every writer made the same.
    assert_eq!(store.blobs().list().expect("list").len(), 3);
    assert_eq!(store.tags().list().expect("tags").len(), 3);
    assert!(verify(&store).expect("verify").is_clean());
}
