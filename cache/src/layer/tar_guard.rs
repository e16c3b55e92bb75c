//! A bound on what the `tar` crate holds in memory for one member.
//!
//! The crate reads a PAX extended header (`x`, `g`), a GNU long name or
//! long link (`L`, `K`) whole into a `Vec`, whatever size its header gives,
//! and keeps a list entry for every block of a GNU sparse map: a layer or an
//! archive of a few KB of gzip can make it allocate gigabytes. It has no
//! limit to set, so [`TarGuard`] sits between the decompressed stream and
//! the crate and follows the same member boundaries the crate does (header
//! blocks, data rounded up to 512 bytes, the PAX `size` override of the
//! next member, GNU sparse extension blocks). It refuses, before the crate
//! sees it, an extension member over [`MAX_EXTENSION`] (Go's archive/tar,
//! which Docker and containerd read layers with, has the same 1 MiB limit)
//! or a sparse map of more than [`MAX_SPARSE_BLOCKS`] extension blocks.
//! Bytes pass through unchanged, so digests over the stream are unaffected.

use std::io::{self, Read};

/// The largest PAX header or GNU long name / long link member accepted.
pub const MAX_EXTENSION: u64 = 1 << 20;
/// The most GNU sparse extension blocks (21 map entries each) one member
/// may have.
pub const MAX_SPARSE_BLOCKS: u64 = 2048;

const BLOCK: usize = 512;

/// Where in the tar stream the next byte is.
enum State {
    /// Collecting a member's header block.
    Header,
    /// Collecting a GNU sparse extension block; then `data` bytes follow.
    Sparse { data: u64, blocks: u64 },
    /// Inside a member's data and padding (`left` bytes); a PAX header's
    /// records are kept (they are at most [`MAX_EXTENSION`]) to find its
    /// `size`.
    Data {
        left: u64,
        pax: Option<Vec<u8>>,
        len: u64,
    },
    /// After the end-of-archive block: nothing more is parsed.
    End,
}

/// A `Read` that passes a tar stream through and refuses the members that
/// would make the `tar` crate allocate without bound.
pub struct TarGuard<R> {
    inner: R,
    state: State,
    block: Vec<u8>,
    /// The `size` of the last PAX header, for the next ordinary member.
    pending_size: Option<u64>,
    /// Bytes followed so far, and where the end-of-archive block began.
    pos: u64,
    end_at: Option<u64>,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            state: State::Header,
            block: Vec::with_capacity(BLOCK),
            pending_size: None,
            pos: 0,
            end_at: None,
        }
    }

    /// Where the end-of-archive block began, once it was read.
    pub fn end_of_archive(&self) -> Option<u64> {
        self.end_at
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Follows `bytes` through the stream's structure.
    fn follow(&mut self, all: &[u8]) -> io::Result<()> {
        let mut bytes = all;
        while !bytes.is_empty() {
            // Where the block being collected began.
            let at = self.pos + (all.len() - bytes.len()) as u64 - self.block.len() as u64;
            match &mut self.state {
                State::End => return Ok(()),
                State::Header | State::Sparse { .. } => {
                    let take = (BLOCK - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.block.len() == BLOCK {
                        self.block_done(at)?;
                        self.block.clear();
                    }
                }
                State::Data { left, pax, len } => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    if let Some(p) = pax {
                        let room = (*len as usize).saturating_sub(p.len()).min(take);
                        p.extend_from_slice(&bytes[..room]);
                    }
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        if let State::Data { pax: Some(p), .. } = &self.state {
                            self.pending_size = pax_size(p);
                        }
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(())
    }

    /// A whole block was collected in the header or sparse state.
    fn block_done(&mut self, at: u64) -> io::Result<()> {
        match self.state {
            State::Sparse { data, blocks } => {
                self.state = if self.block[504] == 1 {
                    if blocks + 1 > MAX_SPARSE_BLOCKS {
                        return Err(refused(format!(
                            "a sparse file's map runs over more than {MAX_SPARSE_BLOCKS} extension blocks"
                        )));
                    }
                    State::Sparse {
                        data,
                        blocks: blocks + 1,
                    }
                } else {
                    data_state(data, None)
                };
                Ok(())
            }
            _ => self.header_done(at),
        }
    }

    /// A header block: where its member's data ends, as the crate reckons.
    fn header_done(&mut self, at: u64) -> io::Result<()> {
        let h = &self.block;
        if h.iter().all(|b| *b == 0) {
            self.state = State::End;
            self.end_at = Some(at);
            return Ok(());
        }
        let kind = h[156];
        let recognized = &h[257..263] == b"ustar\0" && &h[263..265] == b"00"
            || &h[257..263] == b"ustar " && &h[263..265] == b" \0";
        let extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
        // An unreadable size makes the crate fail on this header itself.
        let Some(size) = size_field(&h[124..136]) else {
            self.state = State::End;
            return Ok(());
        };
        if extension && size > MAX_EXTENSION {
            let what = match kind {
                b'x' | b'g' => "PAX extended header",
                b'L' => "GNU long name",
                _ => "GNU long link name",
            };
            return Err(refused(format!(
                "a {what} of {size} bytes (at most {MAX_EXTENSION} are accepted)"
            )));
        }
        // The crate keeps a PAX header's records across the long name and
        // long link members in between, and applies its size to the next
        // other member only.
        let len = if extension {
            size
        } else {
            self.pending_size.take().unwrap_or(size)
        };
        if kind == b'g' || (!recognized && extension) {
            self.pending_size = None;
        }
        let keep_pax = kind == b'x' && recognized;
        if keep_pax {
            self.pending_size = None;
        }
        self.state = if kind == b'S' && recognized && h[482] == 1 {
            State::Sparse {
                data: len,
                blocks: 1,
            }
        } else {
            data_state(len, keep_pax.then(Vec::new))
        };
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The data state for `len` bytes of data, padded to whole blocks.
fn data_state(len: u64, pax: Option<Vec<u8>>) -> State {
    let padded = len.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64);
    if padded == 0 {
        State::Header
    } else {
        State::Data {
            left: padded,
            pax,
            len,
        }
    }
}

fn refused(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("refused tar member: {why}"),
    )
}

/// A header's size field as the crate reads it: base-256 when the high bit
/// of the first byte is set, else octal text up to the first NUL.
fn size_field(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        // The crate reads the last 8 bytes of a 12-byte field.
        return Some(
            f[f.len() - 8..]
                .iter()
                .fold(0, |n, b| n << 8 | u64::from(*b)),
        );
    }
    let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
    let text = std::str::from_utf8(&f[..end]).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// The `size` record of a PAX header, read as the crate reads it: records
/// `LEN key=value\n` in order, the first malformed one ending the search.
fn pax_size(records: &[u8]) -> Option<u64> {
    for line in records.split(|b| *b == b'\n') {
        if line.is_empty() {
            return None;
        }
        let space = line.iter().position(|b| *b == b' ')?;
        let reported: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
        if line.len() + 1 != reported {
            return None;
        }
        let kv = &line[space + 1..];
        let eq = kv.iter().position(|b| *b == b'=')?;
        if &kv[..eq] == b"size" {
            return std::str::from_utf8(&kv[eq + 1..]).ok()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests;
