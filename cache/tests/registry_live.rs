//! The registry client against the real local registry (docker-registry on
//! 127.0.0.1:5000 with `library/busybox:latest` and
//! `library/debian:bookworm-slim`, from .ci/base-images.sh). Ignored by default;
//! CI runs them with `--include-ignored`, and a missing registry fails them.
//!
//! Uploads here bypass cross-repository mounts on purpose, so the bytes
//! really travel, and a tiny chunk threshold forces chunked PATCH uploads.

use std::io::Read;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use cache::digest::Digest;
use cache::image::ParsedManifest;
use cache::platform::Platform;
use cache::reference::Reference;
use cache::store::Store;
use cache::transport::registry::{
    BlobPushed, ClientOptions, RegistryClient, Repo, SmallBlob, get_artifact, get_small_blob, pull,
    push_store_blob, put_artifact, resolve_remote,
};

fn registry() -> String {
    std::env::var("STRATA_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// Fails (never skips) when the registry is not there, saying how to start it.
fn require_registry() -> String {
    let reg = registry();
    let client = RegistryClient::new(ClientOptions::anonymous());
    let repo = Repo::new(reg.clone(), "library/busybox");
    if let Err(e) = client.head_manifest(&repo, "latest") {
        panic!(
            "the local registry at {reg} is not usable ({e}); start it with \
             `bash .ci/registry.sh && bash .ci/base-images.sh`"
        );
    }
    reg
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

fn skopeo_raw(image: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "skopeo inspect {image} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn small_chunks_client() -> RegistryClient {
    let mut o = ClientOptions::anonymous();
    o.chunk_threshold = 256 * 1024;
    o.chunk_size = 1024 * 1024;
    RegistryClient::new(o)
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn pull_both_base_images_then_upload_them_to_new_names_byte_identically() {
    let reg = require_registry();
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let client = small_chunks_client();
    let run = unique();
    for (name, tag) in [("busybox", "latest"), ("debian", "bookworm-slim")] {
        let src = Reference::parse(&format!("{reg}/library/{name}:{tag}")).expect("ref");
        let report = pull(&client, &store, &src, &Platform::default()).expect("pull");
        let original = skopeo_raw(&format!("{reg}/library/{name}:{tag}"));
        assert_eq!(report.digest, Digest::of(&original), "pulled digest");
        // The stored manifest is the registry's bytes.
        let mut stored = Vec::new();
        store
            .blobs()
            .open(&report.digest)
            .expect("open")
            .read_to_end(&mut stored)
            .expect("read");
        assert_eq!(stored, original);

        // Upload every blob for real (no mount), chunked above 256 KiB.
        let dest = Repo::new(reg.clone(), format!("strata-test/{run}/{name}"));
        let ParsedManifest::Image(m) =
            ParsedManifest::parse(&stored, None, "stored").expect("parse")
        else {
            panic!("{name} is expected to be a single-platform manifest");
        };
        let mut hows = Vec::new();
        for blob in std::iter::once(&m.config).chain(m.layers.iter()) {
            hows.push(push_store_blob(&client, &store, &dest, blob, None).expect("push blob"));
        }
        assert_eq!(hows[0], BlobPushed::Monolithic, "config is small");
        assert!(
            hows[1..].iter().all(|h| *h == BlobPushed::Chunked),
            "layers are over the 256 KiB threshold: {hows:?}"
        );
        let media_type = cache::transport::registry::manifest::effective_media_type(
            None,
            &ParsedManifest::parse(&stored, None, "stored").expect("parse"),
        );
        let pushed = client
            .put_manifest(&dest, "v1", &media_type, &stored)
            .expect("put manifest");
        assert_eq!(pushed, report.digest);
        let again = skopeo_raw(&format!("{reg}/{}:v1", dest.repository));
        assert_eq!(again, original, "{name}: manifest bytes differ after push");
        // And the layers read back from the new repository verify.
        for l in &m.layers {
            let mut sink = std::io::sink();
            let n = client
                .get_blob(&dest, &l.digest, Some(l.size), &mut sink)
                .expect("read back");
            assert_eq!(n, l.size);
        }
        // A second push finds every blob already there.
        for blob in std::iter::once(&m.config).chain(m.layers.iter()) {
            assert_eq!(
                push_store_blob(&client, &store, &dest, blob, None).expect("push"),
                BlobPushed::Existed
            );
        }
    }
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn metadata_resolves_without_downloading_layers() {
    let reg = require_registry();
    let client = RegistryClient::new(ClientOptions::anonymous());
    let r = Reference::parse(&format!("{reg}/library/debian:bookworm-slim")).expect("ref");
    let remote = resolve_remote(&client, &r, &Platform::default()).expect("resolve");
    assert_eq!(Digest::of(&remote.config), *remote.config_digest());
    let cfg: serde_json::Value = serde_json::from_slice(&remote.config).expect("config json");
    assert_eq!(cfg["os"], "linux");
    // Storing the metadata only adds manifest and config, no layer.
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    remote.store_metadata(&store).expect("store metadata");
    let blobs = store.blobs().list().expect("list");
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    assert!(!store.blobs().has(&remote.layers()[0].digest));
    // A lazy fetch brings one layer in.
    assert!(
        cache::transport::registry::fetch_blob(&client, &store, &r, &remote.layers()[0])
            .expect("fetch")
    );
    assert!(store.blobs().has(&remote.layers()[0].digest));
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn a_small_artifact_round_trips() {
    let reg = require_registry();
    let client = RegistryClient::new(ClientOptions::anonymous());
    let repo = Repo::new(reg, format!("strata-test/{}/cache", unique()));
    let config = SmallBlob {
        media_type: "application/vnd.strata.cache.config.v1+json".into(),
        data: br#"{"keys":["a","b"]}"#.to_vec(),
    };
    let record = SmallBlob {
        media_type: "application/vnd.strata.cache.record.v1".into(),
        data: b"some cache record".to_vec(),
    };
    let d = put_artifact(
        &client,
        &repo,
        "buildcache",
        "application/vnd.strata.cache.v1",
        Some(&config),
        std::slice::from_ref(&record),
        &[],
    )
    .expect("put artifact");
    let a = get_artifact(&client, &repo, "buildcache")
        .expect("get")
        .expect("present");
    assert_eq!(a.digest, d);
    assert_eq!(
        a.artifact_type.as_deref(),
        Some("application/vnd.strata.cache.v1")
    );
    assert_eq!(a.config, config);
    assert_eq!(a.layers.len(), 1);
    assert_eq!(
        get_small_blob(&client, &repo, &a.layers[0]).expect("blob"),
        record.data
    );
    assert!(
        get_artifact(&client, &repo, "absent")
            .expect("get")
            .is_none()
    );
}

/// Builds a two-entry image index in a fresh repository from the two base
/// images (busybox as linux/amd64, debian labelled linux/arm64/v8), using
/// the client's own mount and manifest PUT. Returns the repository, the
/// index bytes and the two platform manifest digests.
fn make_index(client: &RegistryClient, reg: &str) -> (Repo, Vec<u8>, [Digest; 2]) {
    let repo = Repo::new(reg.to_string(), format!("strata-test/{}/multi", unique()));
    let mut digests = Vec::new();
    let mut entries = Vec::new();
    for (name, tag, platform) in [
        (
            "busybox",
            "latest",
            r#"{"os":"linux","architecture":"amd64"}"#,
        ),
        (
            "debian",
            "bookworm-slim",
            r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#,
        ),
    ] {
        let from = Repo::new(reg.to_string(), format!("library/{name}"));
        let m = client.get_manifest(&from, tag).expect("base manifest");
        let ParsedManifest::Image(im) = &m.parsed else {
            panic!("library/{name} should be a single manifest");
        };
        for blob in std::iter::once(&im.config).chain(im.layers.iter()) {
            client
                .mount_blob(&repo, &blob.digest, &from.repository)
                .expect("mount");
        }
        client
            .put_manifest(&repo, &m.digest.to_string(), &m.media_type, &m.bytes)
            .expect("put child manifest");
        entries.push(format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{platform}}}"#,
            m.media_type,
            m.digest,
            m.bytes.len()
        ));
        digests.push(m.digest.clone());
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes();
    client
        .put_manifest(
            &repo,
            "v1",
            "application/vnd.oci.image.index.v1+json",
            &index,
        )
        .expect("put index");
    (repo, index, [digests[0].clone(), digests[1].clone()])
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn an_index_is_pulled_per_platform_and_pushed_back_byte_identically() {
    let reg = require_registry();
    let client = RegistryClient::new(ClientOptions::anonymous());
    let (repo, index, [amd, arm]) = make_index(&client, &reg);
    let r = Reference::parse(&format!("{reg}/{}:v1", repo.repository)).expect("ref");
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");

    let a = pull(&client, &store, &r, &Platform::default()).expect("pull amd64");
    assert_eq!(a.digest, Digest::of(&index), "the tag points at the index");
    assert_eq!(a.manifest_digest, amd);
    // Only one platform is local: pushing the whole index must refuse, and
    // say how to push the one platform instead.
    let dest = Reference::parse(&format!("{reg}/{}-copy:v1", repo.repository)).expect("ref");
    let err =
        cache::transport::registry::push(&client, &store, &r, &dest).expect_err("children missing");
    assert!(
        err.to_string().contains("by platform manifest digest"),
        "{err}"
    );

    let arm64: Platform = "linux/arm64".parse().expect("platform");
    let b = pull(&client, &store, &r, &arm64).expect("pull arm64");
    assert_eq!(b.manifest_digest, arm);
    let report = cache::transport::registry::push(&client, &store, &r, &dest).expect("push");
    assert_eq!(report.digest, Some(Digest::of(&index)));
    let dest_repo = Repo::new(reg.clone(), dest.repository().to_string());
    let back = client.get_manifest(&dest_repo, "v1").expect("read back");
    assert_eq!(back.bytes, index, "index bytes differ after push");
    assert_eq!(
        skopeo_raw(&format!("{reg}/{}:v1", dest.repository())),
        index
    );

    let s390x: Platform = "linux/s390x".parse().expect("platform");
    let err = pull(&client, &store, &r, &s390x).expect_err("no such platform");
    let msg = err.to_string();
    assert!(
        msg.contains("linux/amd64") && msg.contains("arm64"),
        "{msg}"
    );
}

#[test]
#[ignore = "needs the .ci/test.sh environment (registry on 127.0.0.1:5000)"]
fn an_image_whose_base_layers_were_never_downloaded_pushes_via_its_origins() {
    let reg = require_registry();
    let client = RegistryClient::new(ClientOptions::anonymous());
    let base = Reference::parse(&format!("{reg}/library/debian:bookworm-slim")).expect("ref");
    let run = unique();
    // The same registry under another name: to the client that is another
    // registry, so the missing layer is fetched from it and uploaded.
    let port = reg.rsplit_once(':').map_or("5000", |(_, p)| p).to_string();
    let elsewhere =
        Reference::parse(&format!("localhost:{port}/library/debian:bookworm-slim")).expect("ref");
    for (origin, want) in [
        (&base, BlobPushed::Mounted),
        (&elsewhere, BlobPushed::Chunked),
    ] {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("store");
        // As a cache-hit build has it: manifest and config, no layers.
        let remote = resolve_remote(&client, &base, &Platform::default()).expect("resolve");
        remote.store_metadata(&store).expect("metadata");
        assert!(!store.blobs().has(&remote.layers()[0].digest));
        let local = Reference::parse("example.invalid/lazy/debian:x").expect("ref");
        store.tag_image(&local, remote.top_digest()).expect("tag");
        let dest = Reference::parse(&format!(
            "{reg}/strata-test/{run}/lazy-{}:v1",
            want_name(want)
        ))
        .expect("ref");
        let mut o = ClientOptions::anonymous();
        o.chunk_threshold = 1 << 20;
        let client = RegistryClient::new(o);
        let report = cache::transport::registry::push_with_origins(
            &client,
            &store,
            &local,
            &dest,
            std::slice::from_ref(origin),
        )
        .expect("push with origins");
        let layer_how = report
            .blobs
            .iter()
            .find(|(d, _)| *d == remote.layers()[0].digest)
            .map(|(_, h)| *h);
        assert_eq!(layer_how, Some(want), "{origin}");
        assert_eq!(
            skopeo_raw(&format!("{reg}/{}:v1", dest.repository())),
            remote.manifest.bytes
        );
    }
}

fn want_name(b: BlobPushed) -> &'static str {
    match b {
        BlobPushed::Mounted => "mounted",
        _ => "uploaded",
    }
}
