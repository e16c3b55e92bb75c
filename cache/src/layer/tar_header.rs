//! Encoding of one tar member header: a ustar header, preceded by a PAX
//! extended header when a field does not fit (long names and link targets,
//! big ids or sizes) or when there are xattrs (`SCHILY.xattr.<name>`).
//!
//! Written by hand rather than with `tar::Builder` because the layer format
//! has to be exactly reproducible and the choices are ours: no GNU long-name
//! records (OCI consumers expect PAX), empty uname/gname, a fixed PAX header
//! name with mtime 0, and xattrs in name order.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The largest value of an 8-byte octal header field (uid, gid, mode).
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// The largest value of a 12-byte octal header field (size, mtime).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;

/// The tar type flag of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeFlag {
    Regular,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl TypeFlag {
    fn byte(self) -> u8 {
        match self {
            TypeFlag::Regular => b'0',
            TypeFlag::Hardlink => b'1',
            TypeFlag::Symlink => b'2',
            TypeFlag::Char => b'3',
            TypeFlag::Block => b'4',
            TypeFlag::Dir => b'5',
            TypeFlag::Fifo => b'6',
        }
    }
}

/// Everything a member header says.
pub struct HeaderFields<'a> {
    /// The name as written (directories end with `/`).
    pub name: &'a [u8],
    pub link: Option<&'a [u8]>,
    pub flag: TypeFlag,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Already clamped by the caller.
    pub mtime: u64,
    pub dev: Option<(u32, u32)>,
    /// Sorted by name.
    pub xattrs: &'a [(String, Vec<u8>)],
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn put_octal(field: &mut [u8], value: u64) {
    // width-1 digits and a NUL, as GNU tar and Go write them.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    put_bytes(field, s.as_bytes());
    field[digits] = 0;
}

/// Appends one PAX record `"<len> <key>=<value>\n"`, where `<len>` counts
/// the whole record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The raw values of one ustar header block (already fitted to its fields).
struct Ustar<'a> {
    name: &'a [u8],
    link: &'a [u8],
    flag: u8,
    mode: u32,
    ids: (u64, u64),
    size: u64,
    mtime: u64,
    dev: (u32, u32),
}

fn ustar(u: &Ustar<'_>) -> [u8; 512] {
    let Ustar {
        name,
        link,
        flag,
        mode,
        ids,
        size,
        mtime,
        dev,
    } = *u;
    let mut h = [0u8; 512];
    put_bytes(&mut h[0..100], name);
    put_octal(&mut h[100..108], u64::from(mode));
    put_octal(&mut h[108..116], ids.0);
    put_octal(&mut h[116..124], ids.1);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], mtime);
    h[156] = flag;
    put_bytes(&mut h[157..257], link);
    put_bytes(&mut h[257..263], b"ustar\0");
    put_bytes(&mut h[263..265], b"00");
    // uname (265..297) and gname (297..329) stay empty: names are host
    // facts, and ids are what consumers apply.
    put_octal(&mut h[329..337], u64::from(dev.0));
    put_octal(&mut h[337..345], u64::from(dev.1));
    // Checksum: computed with the checksum field read as eight spaces.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    put_bytes(&mut h[148..156], format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Appends the header block(s) of one member to `out`.
pub fn encode(f: &HeaderFields<'_>, out: &mut Vec<u8>) {
    let mut pax = Vec::new();
    if f.name.len() > 100 {
        pax_record(&mut pax, b"path", f.name);
    }
    let link = f.link.unwrap_or(b"");
    if link.len() > 100 {
        pax_record(&mut pax, b"linkpath", link);
    }
    let uid = u64::from(f.uid);
    let gid = u64::from(f.gid);
    if uid > MAX_OCTAL_8 {
        pax_record(&mut pax, b"uid", uid.to_string().as_bytes());
    }
    if gid > MAX_OCTAL_8 {
        pax_record(&mut pax, b"gid", gid.to_string().as_bytes());
    }
    if f.size > MAX_OCTAL_12 {
        pax_record(&mut pax, b"size", f.size.to_string().as_bytes());
    }
    if f.mtime > MAX_OCTAL_12 {
        pax_record(&mut pax, b"mtime", f.mtime.to_string().as_bytes());
    }
    for (name, value) in f.xattrs {
        let key = [b"SCHILY.xattr.".as_slice(), name.as_bytes()].concat();
        pax_record(&mut pax, &key, value);
    }
    if !pax.is_empty() {
        // A fixed, deterministic name in the style of Go's archive/tar.
        let base = Path::new(OsStr::from_bytes(f.name))
            .file_name()
            .map(|b| b.as_bytes().to_vec())
            .unwrap_or_default();
        let pax_name = [b"PaxHeaders.0/".as_slice(), &base].concat();
        out.extend_from_slice(&ustar(&Ustar {
            name: &pax_name,
            link: b"",
            flag: b'x',
            mode: 0o644,
            ids: (0, 0),
            size: pax.len() as u64,
            mtime: 0,
            dev: (0, 0),
        }));
        out.extend_from_slice(&pax);
        pad(out, pax.len() as u64);
    }
    let fit = |v: u64, max: u64| if v > max { 0 } else { v };
    out.extend_from_slice(&ustar(&Ustar {
        name: f.name,
        link,
        flag: f.flag.byte(),
        mode: f.mode & 0o7777,
        ids: (fit(uid, MAX_OCTAL_8), fit(gid, MAX_OCTAL_8)),
        size: fit(f.size, MAX_OCTAL_12),
        mtime: fit(f.mtime, MAX_OCTAL_12),
        dev: f.dev.unwrap_or((0, 0)),
    }));
}

/// Zero bytes that round `len` up to a whole 512-byte block.
pub fn padding(len: u64) -> usize {
    ((512 - (len % 512)) % 512) as usize
}

fn pad(out: &mut Vec<u8>, len: u64) {
    out.resize(out.len() + padding(len), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut v = Vec::new();
        pax_record(&mut v, b"path", b"x");
        assert_eq!(v, b"9 path=x\n");
        let mut v = Vec::new();
        let long = vec![b'a'; 95];
        pax_record(&mut v, b"path", &long);
        // 102 bytes after the length: the length itself needs three digits.
        let text = String::from_utf8(v.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), v.len());
        assert_eq!(v.len(), 105);
    }
}
