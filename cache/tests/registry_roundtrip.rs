//! Round trip through every transport: pull from the local registry, save a
//! docker-archive, load it into a fresh store, push to a new name — and the
//! registry then holds byte-identical manifests and layers. Needs the local
//! registry of .ci/registry.sh (ignored by default; CI includes it).

use std::time::{SystemTime, UNIX_EPOCH};

use cache::digest::Digest;
use cache::image::ParsedManifest;
use cache::platform::Platform;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::SaveItem;
use cache::transport::docker_archive::save;
use cache::transport::load_archive;
use cache::transport::registry::{BlobPushed, ClientOptions, RegistryClient, Repo, pull, push};

fn registry() -> String {
    std::env::var("STRATA_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn pull_save_load_push_keeps_manifests_and_layers_byte_identical() {
    let reg = registry();
    let client = RegistryClient::new(ClientOptions::anonymous());
    let run = unique();
    for (name, tag) in [("busybox", "latest"), ("debian", "bookworm-slim")] {
        let src = Reference::parse(&format!("{reg}/library/{name}:{tag}")).expect("ref");
        let src_repo = Repo::new(reg.clone(), format!("library/{name}"));
        let original = client
            .get_manifest(&src_repo, tag)
            .unwrap_or_else(|e| panic!("{e} (start the registry: bash .ci/registry.sh)"));

        let first = tempfile::tempdir().expect("tempdir");
        let store = Store::open(first.path()).expect("store");
        pull(&client, &store, &src, &Platform::default()).expect("pull");
        let image = store
            .resolve_image(&src)
            .expect("resolve")
            .expect("pulled image is local");
        let archive = first.path().join("image.tar");
        save(
            &store,
            &[SaveItem {
                name: Some(src.clone()),
                image,
            }],
            &archive,
        )
        .expect("save");

        let second = tempfile::tempdir().expect("tempdir");
        let fresh = Store::open(second.path()).expect("fresh store");
        let loaded = load_archive(&fresh, &archive, &Platform::default()).expect("load");
        assert_eq!(loaded.len(), 1);

        // Pushed under a name from another registry, so nothing can be
        // mounted: every byte is uploaded from the loaded store.
        let alias = Reference::parse(&format!("example.invalid/rt/{name}:x")).expect("ref");
        fresh
            .tag_image(&alias, &loaded[0].top_digest)
            .expect("alias tag");
        let dest = Reference::parse(&format!("{reg}/strata-test/{run}/{name}:rt")).expect("ref");
        let report = push(&client, &fresh, &alias, &dest).expect("push");
        assert!(
            report
                .blobs
                .iter()
                .all(|(_, how)| matches!(how, BlobPushed::Monolithic | BlobPushed::Chunked)),
            "{name}: every blob must be uploaded: {:?}",
            report.blobs
        );
        assert_eq!(report.digest.as_ref(), Some(&original.digest));
        let dest_repo = Repo::new(reg.clone(), dest.repository().to_string());
        let pushed = client.get_manifest(&dest_repo, "rt").expect("read back");
        assert_eq!(
            pushed.bytes, original.bytes,
            "{name}: manifest bytes differ"
        );
        let ParsedManifest::Image(m) = &pushed.parsed else {
            panic!("{name}: expected an image manifest");
        };
        for blob in std::iter::once(&m.config).chain(m.layers.iter()) {
            // get_blob verifies the sha256; compare to the local copy too.
            let mut remote = Vec::new();
            client
                .get_blob(&dest_repo, &blob.digest, Some(blob.size), &mut remote)
                .expect("blob");
            assert_eq!(Digest::of(&remote), blob.digest);
            let local = std::fs::read(fresh.blobs().path(&blob.digest)).expect("local blob");
            assert_eq!(remote, local, "{name}: blob {} differs", blob.digest);
        }
    }
}
