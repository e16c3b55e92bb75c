//! docker-archive and OCI layout export/import round trips on synthetic
//! images, and the refusals: tampered blobs, wrong diff IDs, hostile names.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use cache::digest::Digest;
use cache::error::Error;
use cache::image::{Descriptor, Image, ManifestFormat, media_type};
use cache::platform::Platform;
use cache::reference::{ImageSource, Reference};
use cache::store::Store;
use cache::transport::{SaveItem, docker_archive};
use cache::transport::{load_archive, oci_layout, resolve_source};

fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, name, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// A two-layer image (gzip + plain) with a Docker-only config field.
fn make_image(store: &Store, tag: &str, seed: &str) -> Image {
    let l1 = layer_tar(&[("etc/hello", format!("hello {seed}").as_bytes())]);
    let l2 = layer_tar(&[("bin/tool", b"#!/bin/sh\necho tool\n")]);
    let l1z = gzip(&l1);
    let d1 = store.blobs().put_bytes(&l1z, None).expect("put");
    let d2 = store.blobs().put_bytes(&l2, None).expect("put");
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-06T07:08:09Z",
        "config": {"Cmd": ["/bin/tool"], "Healthcheck": {"Test": ["CMD", "true"]}},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&l1), Digest::of(&l2)]},
    }))
    .expect("json");
    let img = store
        .write_image(
            &cfg,
            &[
                Descriptor::new(media_type::OCI_LAYER_GZIP, d1, l1z.len() as u64),
                Descriptor::new(media_type::OCI_LAYER, d2, l2.len() as u64),
            ],
            ManifestFormat::Docker,
        )
        .expect("write image");
    store
        .tag_image(&Reference::parse(tag).expect("ref"), &img.manifest_digest)
        .expect("tag");
    img
}

fn tar_members(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut ar = tar::Archive::new(fs::File::open(path).expect("open"));
    let mut out = BTreeMap::new();
    let mut order = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).expect("read");
        order.push(name.clone());
        out.insert(name, buf);
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "archive entries are not sorted");
    out
}

#[test]
fn docker_archive_has_the_hybrid_layout_and_round_trips() {
    let t = tempfile::tempdir().expect("tempdir");
    let a = Store::open(t.path().join("a")).expect("store a");
    let img = make_image(&a, "example.com/team/app:v1", "one");
    let out = t.path().join("app.tar");
    let name = Reference::parse("example.com/team/app:v1").expect("ref");
    docker_archive::save(
        &a,
        &[SaveItem {
            name: Some(name.clone()),
            image: img.clone(),
        }],
        &out,
    )
    .expect("save");

    let m = tar_members(&out);
    assert_eq!(m["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
    let manifest_json: serde_json::Value =
        serde_json::from_slice(&m["manifest.json"]).expect("json");
    let entry = &manifest_json[0];
    assert_eq!(
        entry["Config"],
        format!("blobs/sha256/{}", img.manifest.config.digest.hex())
    );
    assert_eq!(entry["RepoTags"][0], "example.com/team/app:v1");
    assert_eq!(entry["Layers"].as_array().expect("layers").len(), 2);
    for l in entry["Layers"].as_array().expect("layers") {
        assert!(m.contains_key(l.as_str().expect("str")), "{l} missing");
    }
    let index: serde_json::Value = serde_json::from_slice(&m["index.json"]).expect("json");
    let ann = &index["manifests"][0]["annotations"];
    assert_eq!(ann["io.containerd.image.name"], "example.com/team/app:v1");
    assert_eq!(ann["org.opencontainers.image.ref.name"], "v1");
    assert_eq!(
        index["manifests"][0]["digest"],
        img.manifest_digest.to_string()
    );
    // Every blob's bytes match its name.
    for (name, data) in &m {
        if let Some(hex) = name.strip_prefix("blobs/sha256/")
            && !hex.is_empty()
        {
            assert_eq!(Digest::of(data).hex(), hex);
        }
    }
    // Config bytes are carried verbatim (Docker fields survive).
    assert_eq!(m[entry["Config"].as_str().expect("str")], img.config.raw());

    // Load into a fresh store: same manifest, same config, name restored.
    let b = Store::open(t.path().join("b")).expect("store b");
    let loaded = load_archive(&b, &out, &Platform::linux_amd64()).expect("load");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].names, vec![name.clone()]);
    let got = b.resolve_image(&name).expect("resolve").expect("present");
    assert_eq!(got.manifest_digest, img.manifest_digest);
    assert_eq!(got.manifest_raw, img.manifest_raw);
    assert_eq!(got.config.raw(), img.config.raw());

    // Saving again gives the same bytes (deterministic archive).
    let out2 = t.path().join("app2.tar");
    docker_archive::save(
        &b,
        &[SaveItem {
            name: Some(name),
            image: got,
        }],
        &out2,
    )
    .expect("save");
    assert_eq!(
        fs::read(&out).expect("read"),
        fs::read(&out2).expect("read")
    );
    // No partial files are left next to the output.
    let stray: Vec<_> = fs::read_dir(t.path())
        .expect("ls")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".strata-partial")
        })
        .collect();
    assert!(stray.is_empty());
}

/// Rewrites a tar, replacing the member `name`'s content via `f`.
fn rewrite_tar(src: &Path, dst: &Path, f: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut ar = tar::Archive::new(fs::File::open(src).expect("open"));
    let mut b = tar::Builder::new(fs::File::create(dst).expect("create"));
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        let Some(data) = f(&name, data) else { continue };
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, &name, &data[..]).expect("append");
    }
    b.finish().expect("finish");
}

#[test]
fn tampered_archives_are_refused_and_leave_no_name() {
    let t = tempfile::tempdir().expect("tempdir");
    let a = Store::open(t.path().join("a")).expect("store a");
    let img = make_image(&a, "app:1", "x");
    let out = t.path().join("app.tar");
    let name = Reference::parse("app:1").expect("ref");
    docker_archive::save(
        &a,
        &[SaveItem {
            name: Some(name.clone()),
            image: img.clone(),
        }],
        &out,
    )
    .expect("save");

    // 1. A layer blob whose bytes do not match its name.
    let layer = img.manifest.layers[1].digest.hex().to_string();
    let bad = t.path().join("bad-blob.tar");
    rewrite_tar(&out, &bad, |n, mut d| {
        if n.ends_with(&layer) {
            d[600] ^= 1;
        }
        Some(d)
    });
    let b = Store::open(t.path().join("b")).expect("store b");
    let err = load_archive(&b, &bad, &Platform::linux_amd64()).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(b.tags().get(&name).expect("tag").is_none());
    assert!(!b.blobs().has(&img.manifest.layers[1].digest));

    // 2. A classic docker-archive whose layer does not match its diff ID
    // (no blobs/ names to check, so only the diff ID can catch it).
    let cfg_name = format!("blobs/sha256/{}", img.manifest.config.digest.hex());
    let other = layer_tar(&[("evil", b"not the layer the config names")]);
    let swapped = t.path().join("bad-diffid.tar");
    rewrite_tar(&out, &swapped, |n, d| match n {
        "index.json" | "oci-layout" => None,
        "manifest.json" => Some(
            format!(
                r#"[{{"Config":"{cfg_name}","RepoTags":["app:1"],"Layers":["l1.tar","l2.tar"]}}]"#
            )
            .into_bytes(),
        ),
        n if n == cfg_name => Some(d),
        _ => None,
    });
    {
        // Append the two layers under free names: the first right, the
        // second replaced.
        let l1 = a
            .blobs()
            .read_verified(&img.manifest.layers[0].digest, 1 << 20)
            .expect("l1");
        let mut ar = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&swapped)
            .expect("open");
        let len = ar.metadata().expect("meta").len();
        // Drop the two zero blocks at the end so members can be appended.
        ar.set_len(len - 1024).expect("truncate");
        std::io::Seek::seek(&mut ar, std::io::SeekFrom::End(0)).expect("seek");
        let mut b = tar::Builder::new(ar);
        for (name, data) in [("l1.tar", &l1), ("l2.tar", &other)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..]).expect("append");
        }
        b.finish().expect("finish");
    }
    let c = Store::open(t.path().join("c")).expect("store c");
    let err = load_archive(&c, &swapped, &Platform::linux_amd64()).unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { what, .. } if what.contains("diff_ids[1]")),
        "{err}"
    );
    assert!(c.tags().get(&name).expect("tag").is_none());

    // 3. Hostile member names.
    let hostile = t.path().join("hostile.tar");
    rewrite_tar(&out, &hostile, |n, d| {
        if n == "manifest.json" {
            Some(br#"[{"Config":"../../etc/passwd","RepoTags":["x:1"],"Layers":[]}]"#.to_vec())
        } else {
            Some(d)
        }
    });
    let h = Store::open(t.path().join("h")).expect("store h");
    // With index.json present the OCI path is used; force the classic one.
    let hostile_classic = t.path().join("hostile-classic.tar");
    rewrite_tar(&hostile, &hostile_classic, |n, d| match n {
        "index.json" | "oci-layout" => None,
        _ => Some(d),
    });
    let err = load_archive(&h, &hostile_classic, &Platform::linux_amd64()).unwrap_err();
    assert!(err.to_string().contains(".."), "{err}");
}

#[test]
fn classic_docker_archive_with_symlinked_layers_loads() {
    let t = tempfile::tempdir().expect("tempdir");
    let layer = layer_tar(&[("a", b"a")]);
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer)]},
    }))
    .expect("json");
    let path = t.path().join("classic.tar");
    let mut b = tar::Builder::new(fs::File::create(&path).expect("create"));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).expect("append");
    };
    add("abc.tar", &layer);
    add("cfg.json", &cfg);
    add(
        "manifest.json",
        br#"[{"Config":"cfg.json","RepoTags":["old/style:1"],"Layers":["id1/layer.tar"]}]"#,
    );
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "id1/layer.tar", "../abc.tar")
        .expect("symlink");
    b.finish().expect("finish");
    drop(b);

    let s = Store::open(t.path().join("s")).expect("store");
    let loaded = load_archive(&s, &path, &Platform::linux_amd64()).expect("load");
    assert_eq!(loaded[0].names[0].to_string(), "docker.io/old/style:1");
    let img = &loaded[0].image;
    assert_eq!(img.id(), &Digest::of(&cfg));
    assert_eq!(img.manifest.layers[0].media_type, media_type::DOCKER_LAYER);
    assert_eq!(img.manifest.layers[0].digest, Digest::of(&layer));
}

#[test]
fn oci_layout_dir_and_tar_export_import() {
    let t = tempfile::tempdir().expect("tempdir");
    let a = Store::open(t.path().join("a")).expect("store a");
    let one = make_image(&a, "app:one", "1");
    let two = make_image(&a, "app:two", "2");
    let items = [
        SaveItem {
            name: Some(Reference::parse("app:one").expect("ref")),
            image: one.clone(),
        },
        SaveItem {
            name: Some(Reference::parse("app:two").expect("ref")),
            image: two.clone(),
        },
    ];
    let dir = t.path().join("layout");
    oci_layout::export_dir(&a, &items, &dir).expect("export dir");
    assert!(dir.join("oci-layout").is_file());
    // Config and layers as they are (the manifest is converted to OCI).
    for d in one.blob_digests()[1..]
        .iter()
        .chain(two.blob_digests()[1..].iter())
    {
        let p = dir.join("blobs/sha256").join(d.hex());
        assert_eq!(Digest::of(&fs::read(&p).expect("blob")), *d);
    }
    // Exporting again into the same layout keeps one entry per tag.
    oci_layout::export_dir(&a, &items[..1], &dir).expect("export again");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index")).expect("json");
    assert_eq!(
        index["manifests"].as_array().expect("arr").len(),
        2,
        "{index}"
    );

    let b = Store::open(t.path().join("b")).expect("store b");
    let src = ImageSource::parse(&format!("oci-layout:{}:two", dir.display())).expect("source");
    let got = resolve_source(&b, &src, &Platform::linux_amd64())
        .expect("import")
        .expect("image");
    // Layouts carry OCI media types (readers skip Docker ones): same
    // config and layers, a converted manifest.
    assert_eq!(got.id(), two.id());
    assert_eq!(got.manifest.media_type(), media_type::OCI_MANIFEST);
    assert_eq!(got.manifest.config.media_type, media_type::OCI_CONFIG);
    assert_eq!(
        got.layers().iter().map(|l| &l.digest).collect::<Vec<_>>(),
        two.layers().iter().map(|l| &l.digest).collect::<Vec<_>>()
    );
    assert_eq!(
        got.manifest.layers[0].media_type,
        media_type::OCI_LAYER_GZIP
    );
    // Without a tag, a layout with two images is ambiguous.
    let src = ImageSource::parse(&format!("oci-layout:{}", dir.display())).expect("source");
    let err = resolve_source(&b, &src, &Platform::linux_amd64()).unwrap_err();
    assert!(
        err.to_string().contains("one, two") || err.to_string().contains("two, one"),
        "{err}"
    );

    // Tamper with a layout blob: the import is refused.
    let victim = dir
        .join("blobs/sha256")
        .join(one.manifest.layers[1].digest.hex());
    let mut data = fs::read(&victim).expect("read");
    data[10] ^= 0xff;
    fs::write(&victim, data).expect("write");
    let c = Store::open(t.path().join("c")).expect("store c");
    let src = ImageSource::parse(&format!("oci-layout:{}:one", dir.display())).expect("source");
    let err = resolve_source(&c, &src, &Platform::linux_amd64()).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

    // An OCI archive (tar) loads with its names.
    let tar_path = t.path().join("oci.tar");
    oci_layout::export_tar(&a, &items, &tar_path).expect("export tar");
    let m = tar_members(&tar_path);
    assert!(!m.contains_key("manifest.json"));
    let d = Store::open(t.path().join("d")).expect("store d");
    let loaded = load_archive(&d, &tar_path, &Platform::linux_amd64()).expect("load");
    let names: Vec<String> = loaded
        .iter()
        .flat_map(|l| l.names.iter().map(|n| n.familiar()))
        .collect();
    assert_eq!(names, ["app:one", "app:two"]);
    // And docker-archive: sources work for FROM.
    let da = t.path().join("one.tar");
    docker_archive::save(&a, &items[..1], &da).expect("save");
    let e = Store::open(t.path().join("e")).expect("store e");
    let src = ImageSource::parse(&format!("docker-archive:{}", da.display())).expect("source");
    let got = resolve_source(&e, &src, &Platform::linux_amd64())
        .expect("import")
        .expect("image");
    assert_eq!(got.manifest_digest, one.manifest_digest);
}

#[test]
fn one_image_under_two_names_and_a_gzipped_archive() {
    let t = tempfile::tempdir().expect("tempdir");
    let a = Store::open(t.path().join("a")).expect("store a");
    let img = make_image(&a, "app:1", "n");
    let names = ["app:1", "registry.example:5000/team/app:stable"];
    let items: Vec<SaveItem> = names
        .iter()
        .map(|n| SaveItem {
            name: Some(Reference::parse(n).expect("ref")),
            image: img.clone(),
        })
        .collect();
    let out = t.path().join("two-names.tar");
    docker_archive::save(&a, &items, &out).expect("save");
    let m = tar_members(&out);
    let mj: serde_json::Value = serde_json::from_slice(&m["manifest.json"]).expect("json");
    assert_eq!(mj.as_array().expect("arr").len(), 1, "{mj}");
    assert_eq!(mj[0]["RepoTags"], serde_json::json!(names));
    let idx: serde_json::Value = serde_json::from_slice(&m["index.json"]).expect("json");
    assert_eq!(idx["manifests"].as_array().expect("arr").len(), 2);

    // `docker load` takes compressed archives; so does strata.
    let gz = t.path().join("two-names.tar.gz");
    fs::write(&gz, gzip(&fs::read(&out).expect("read"))).expect("write");
    let b = Store::open(t.path().join("b")).expect("store b");
    let loaded = load_archive(&b, &gz, &Platform::linux_amd64()).expect("load gz");
    assert_eq!(loaded.len(), 1);
    for n in names {
        let r = Reference::parse(n).expect("ref");
        let got = b.resolve_image(&r).expect("resolve").expect("tagged");
        assert_eq!(got.manifest_digest, img.manifest_digest);
    }

    // Garbage is refused with the file named.
    let junk = t.path().join("junk.tar");
    fs::write(&junk, b"this is not a tar archive at all").expect("write");
    let err = load_archive(&b, &junk, &Platform::linux_amd64()).unwrap_err();
    assert!(err.to_string().contains("junk.tar"), "{err}");
}
