use std::io::{self, Read};

use super::*;

/// Hands out at most `step` bytes a read, so member boundaries fall
/// everywhere inside the guard's reads.
struct Trickle<R> {
    inner: R,
    step: usize,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step);
        self.inner.read(&mut buf[..n])
    }
}

/// A member as the crate reads it: path, link target, content.
type Member = (String, Option<String>, Vec<u8>);

/// Every member, as the crate reads them.
fn members<R: Read>(r: R) -> io::Result<Vec<Member>> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(r);
    for m in ar.entries()? {
        let mut m = m?;
        let path = String::from_utf8_lossy(&m.path_bytes()).into_owned();
        let link = m
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut data = Vec::new();
        m.read_to_end(&mut data)?;
        out.push((path, link, data));
    }
    Ok(out)
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h
}

/// Long names and link targets, PAX records (one of them a `size` that
/// differs from the header's), empty and odd-sized files.
fn varied_archive() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let long = format!("{}/file", "d".repeat(180));
    let mut h = header(tar::EntryType::Regular, 3);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let mut h = header(tar::EntryType::Symlink, 0);
    b.append_link(&mut h, "link", "t".repeat(300)).unwrap();
    b.append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..])])
        .unwrap();
    let mut h = header(tar::EntryType::Regular, 1000);
    b.append_data(&mut h, "with-pax", &[7u8; 1000][..]).unwrap();
    // The header says 0 bytes; the PAX record says 700, which the crate
    // believes: the guard must too, or it loses the next header.
    b.append_pax_extensions([("size", &b"700"[..])]).unwrap();
    let mut h = header(tar::EntryType::Regular, 0);
    h.set_path("pax-sized").unwrap();
    h.set_cksum();
    b.append(&h, &[9u8; 700][..]).unwrap();
    let mut h = header(tar::EntryType::Regular, 0);
    b.append_data(&mut h, "empty", &[][..]).unwrap();
    let mut h = header(tar::EntryType::Regular, 513);
    b.append_data(&mut h, "last", &[1u8; 513][..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn every_member_passes_unchanged_whatever_the_read_sizes() {
    let tar = varied_archive();
    let want = members(&tar[..]).unwrap();
    assert_eq!(want.len(), 6);
    assert_eq!(want[3].0, "pax-sized");
    assert_eq!(want[3].2, vec![9u8; 700]);
    for step in [1, 7, 511, 512, 513, 4096, 1 << 20] {
        let mut g = TarGuard::new(Trickle {
            inner: &tar[..],
            step,
        });
        let got = members(&mut g).unwrap();
        assert_eq!(got, want, "reads of {step} bytes");
        // It followed every member: it found the end where the builder put
        // it (two zero blocks at the end).
        assert_eq!(
            g.end_of_archive(),
            Some(tar.len() as u64 - 1024),
            "reads of {step} bytes"
        );
    }
}

#[test]
fn an_oversized_header_after_a_pax_sized_member_is_found() {
    // Without the PAX size the guard would look for this header 700 bytes
    // too early, inside the data, and miss it.
    let mut tar = varied_archive();
    tar.truncate(tar.len() - 1024);
    let mut h = header(tar::EntryType::GNULongName, 1 << 30);
    h.set_path("x").unwrap();
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    let e = members(TarGuard::new(&tar[..])).expect_err("refused");
    assert!(
        e.to_string().contains("GNU long name of 1073741824 bytes"),
        "{e}"
    );
}

#[test]
fn bytes_after_the_end_pass_and_are_not_parsed() {
    let mut tar = varied_archive();
    tar.extend_from_slice(&[0xffu8; 3000]);
    let mut g = TarGuard::new(&tar[..]);
    let mut all = Vec::new();
    g.read_to_end(&mut all).unwrap();
    assert_eq!(all, tar);
}

/// A header announcing `size` bytes of `kind`, then endless filler: the
/// guard must refuse at the header, without reading (or keeping) the data.
fn bomb(kind: tar::EntryType, size: u64) -> io::Error {
    let mut h = header(kind, size);
    h.set_path("x").unwrap();
    h.set_cksum();
    let stream = h.as_bytes().to_vec();
    let endless = (&stream[..]).chain(io::repeat(b'a'));
    members(TarGuard::new(endless)).expect_err("refused")
}

#[test]
fn oversized_extension_members_are_refused_at_their_header() {
    for (kind, what) in [
        (tar::EntryType::XHeader, "PAX extended header"),
        (tar::EntryType::XGlobalHeader, "PAX extended header"),
        (tar::EntryType::GNULongName, "GNU long name"),
        (tar::EntryType::GNULongLink, "GNU long link name"),
    ] {
        let e = bomb(kind, 4 << 30);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            format!(
                "refused tar member: a {what} of 4294967296 bytes (at most 1048576 are accepted)"
            )
        );
    }
}

#[test]
fn extension_members_up_to_the_limit_are_read() {
    let mut b = tar::Builder::new(Vec::new());
    let value = vec![b'v'; (MAX_EXTENSION - 64) as usize];
    b.append_pax_extensions([("comment", &value[..])]).unwrap();
    let mut h = header(tar::EntryType::Regular, 2);
    b.append_data(&mut h, "f", &b"ok"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let got = members(TarGuard::new(&tar[..])).unwrap();
    assert_eq!(got, vec![("f".to_string(), None, b"ok".to_vec())]);
}

/// A GNU sparse member whose map goes on over `ext` extension blocks.
fn sparse(ext: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_path("s").unwrap();
    h.set_size(0);
    h.set_mode(0o644);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.isextended[0] = 1;
    gnu.realsize = *b"00000000000\0";
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    for i in 0..ext {
        let mut block = [0u8; 512];
        block[504] = u8::from(i + 1 < ext);
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn sparse_maps_are_followed_and_bounded() {
    let ok = sparse(3);
    let got = members(TarGuard::new(&ok[..])).unwrap();
    assert_eq!(got, vec![("s".to_string(), None, Vec::new())]);
    let e = members(TarGuard::new(&sparse(MAX_SPARSE_BLOCKS + 5)[..])).expect_err("refused");
    assert!(
        e.to_string().contains("more than 2048 extension blocks"),
        "{e}"
    );
}

#[test]
fn size_fields_read_like_the_crate() {
    assert_eq!(size_field(b"00000001750\0"), Some(1000));
    assert_eq!(size_field(b"   1750 \0\0\0\0"), Some(1000));
    let mut big = [0u8; 12];
    big[0] = 0x80;
    big[4..].copy_from_slice(&(1u64 << 40).to_be_bytes());
    assert_eq!(size_field(&big), Some(1 << 40));
    assert_eq!(size_field(b"zz\0\0\0\0\0\0\0\0\0\0"), None);
    assert_eq!(pax_size(b"12 size=700\n"), Some(700));
    assert_eq!(pax_size(b"8 a=bcd\n12 size=700\n"), Some(700));
    assert_eq!(pax_size(b"99 size=700\n"), None);
}

/// Archives written by GNU tar (part of every Debian system), in its own
/// format with a sparse file of many holes (its map needs extension blocks)
/// and in POSIX format with long names: the guard follows them to the end.
#[test]
fn gnu_tar_archives_are_followed_to_their_end() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d".repeat(120))).unwrap();
    std::fs::write(src.join("d".repeat(120)).join("f".repeat(120)), b"long").unwrap();
    let mut f = std::fs::File::create(src.join("sparse")).unwrap();
    for i in 0..40u64 {
        f.seek(SeekFrom::Start(i * 65536)).unwrap();
        f.write_all(&[b'a' + (i % 26) as u8; 100]).unwrap();
    }
    f.set_len(40 * 65536).unwrap();
    drop(f);
    for format in ["gnu", "posix"] {
        let archive = dir.path().join(format!("{format}.tar"));
        let status = std::process::Command::new("tar")
            .args(["--sparse", &format!("--format={format}"), "-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .expect("GNU tar runs");
        assert!(status.success(), "tar --format={format}");
        let bytes = std::fs::read(&archive).unwrap();
        let want = members(&bytes[..]).unwrap();
        assert!(want.len() >= 4, "{format}: {want:?}");
        for step in [1, 512, 1 << 16] {
            let mut g = TarGuard::new(Trickle {
                inner: &bytes[..],
                step,
            });
            assert_eq!(members(&mut g).unwrap(), want, "{format}, reads of {step}");
            let end = g.end_of_archive().expect("the end was found");
            assert!(
                bytes[end as usize..].iter().all(|b| *b == 0),
                "{format}: the end block found at {end} is followed by data"
            );
        }
    }
    // The GNU sparse member did use extension blocks.
    let gnu = std::fs::read(dir.path().join("gnu.tar")).unwrap();
    let sparse_header = gnu
        .chunks(512)
        .find(|b| b[156] == b'S')
        .expect("a sparse member");
    assert_eq!(sparse_header[482], 1, "its map goes on in extension blocks");
}
