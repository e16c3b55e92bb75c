//! Ownership the unprivileged user could not apply, recorded in a
//! `user.rootlesscontainers` xattr the way umoci does.
//!
//! The value is the protobuf message umoci uses
//! (`message Resource { uint32 uid = 1; uint32 gid = 2; }`), so umoci and
//! other rootless tools read our records. Two extra fields of ours carry what
//! an unprivileged user cannot create at all: field 3 is the full `st_mode`
//! (file type + permissions) of a device node that had to be unpacked as an
//! empty regular file, field 4 its device number (`makedev` encoding).
//! Protobuf readers skip unknown fields, so umoci still reads uid and gid.
//!
//! The convention (again umoci's): a file *without* a record is owned by the
//! user doing the unpacking, who stands for root inside the image. Writing a
//! directory back as a layer reads owners from disk or from these records
//! ([`OwnerSource`]).

use std::fmt;

/// Where a written entry's uid/gid come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerSource {
    /// As `lstat` reports them.
    #[default]
    Disk,
    /// From the `user.rootlesscontainers` record where there is one (which
    /// also turns device placeholders back into device nodes); files
    /// without one are owned by root, except that on-disk ids other than
    /// the current user's are kept. This reads back what
    /// [`super::unpack`] recorded.
    Xattr,
}

/// Name of the xattr holding a [`Record`].
pub const ROOTLESS_XATTR: &str = "user.rootlesscontainers";

/// Ownership (and, for device nodes, type) that could not be applied on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    pub uid: u32,
    pub gid: u32,
    /// Full `st_mode` of a device node stood in for by a regular file.
    pub mode: Option<u32>,
    /// Device number of that node.
    pub rdev: Option<u64>,
}

/// A record that is not valid protobuf of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(&'static str);

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed {ROOTLESS_XATTR} record: {}", self.0)
    }
}

impl std::error::Error for RecordError {}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<u64, RecordError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or(RecordError("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(RecordError("varint longer than 64 bits"))
}

impl Record {
    /// The protobuf encoding. Zero uid/gid are omitted, as proto3 does.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        if self.uid != 0 {
            out.push(0x08);
            put_varint(&mut out, u64::from(self.uid));
        }
        if self.gid != 0 {
            out.push(0x10);
            put_varint(&mut out, u64::from(self.gid));
        }
        if let Some(mode) = self.mode {
            out.push(0x18);
            put_varint(&mut out, u64::from(mode));
        }
        if let Some(rdev) = self.rdev {
            out.push(0x20);
            put_varint(&mut out, rdev);
        }
        out
    }

    /// Parses a record, skipping unknown varint and length-delimited fields.
    pub fn decode(mut buf: &[u8]) -> Result<Self, RecordError> {
        let mut r = Record::default();
        while !buf.is_empty() {
            let key = get_varint(&mut buf)?;
            let (field, wire) = (key >> 3, key & 7);
            match wire {
                0 => {
                    let v = get_varint(&mut buf)?;
                    let small = || u32::try_from(v).map_err(|_| RecordError("value over 32 bits"));
                    match field {
                        1 => r.uid = small()?,
                        2 => r.gid = small()?,
                        3 => r.mode = Some(small()?),
                        4 => r.rdev = Some(v),
                        _ => {}
                    }
                }
                2 => {
                    let len = usize::try_from(get_varint(&mut buf)?)
                        .map_err(|_| RecordError("length overflow"))?;
                    if len > buf.len() {
                        return Err(RecordError("truncated field"));
                    }
                    buf = &buf[len..];
                }
                _ => return Err(RecordError("unsupported wire type")),
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_umoci_protobuf_and_round_trips() {
        // uid 1000 = varint e8 07; gid 65534 = fe ff 03.
        let r = Record {
            uid: 1000,
            gid: 65534,
            ..Default::default()
        };
        assert_eq!(r.encode(), vec![0x08, 0xe8, 0x07, 0x10, 0xfe, 0xff, 0x03]);
        assert_eq!(Record::decode(&r.encode()), Ok(r));
        let dev = Record {
            uid: 0,
            gid: 5,
            mode: Some(0o020620),
            rdev: Some(0x0501),
        };
        assert_eq!(Record::decode(&dev.encode()), Ok(dev));
        assert_eq!(Record::decode(&[]), Ok(Record::default()));
        assert!(Record::decode(&[0x08]).is_err());
        assert!(Record::decode(&[0x0a, 0x05, 1]).is_err());
    }
}
