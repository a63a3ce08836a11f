//! Zlib-compressed name/value header blocks (SPDY/3 draft, section 2.6.10).
//!
//! Uncompressed layout, all integers big-endian 32-bit:
//!
//! ```text
//! | number of pairs | len(name) | name | len(value) | value | … |
//! ```
//!
//! The block is then deflated with zlib, the SPDY/3 dictionary (`src/dictionary.rs`) preset, and
//! flushed with `Z_SYNC_FLUSH`. Each direction of a connection has one zlib stream that lives as
//! long as the connection: each block continues the previous one's compression state, so
//! frames must be compressed in the order they are written and inflated in the order read.
//!
//! Deviations, both lenient and matching Go's `spdy` package that Kubernetes uses: upper-case
//! names are lower-cased rather than refused, and a repeated name is merged (values NUL-joined)
//! rather than refused.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::dictionary::SPDY3_DICTIONARY;
use crate::error::HeaderBlockError;
use crate::frame::Headers;

/// The sending side's zlib stream.
pub struct HeaderCompressor {
    z: Compress,
}

impl std::fmt::Debug for HeaderCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCompressor").finish_non_exhaustive()
    }
}

impl HeaderCompressor {
    /// A fresh stream primed with the SPDY/3 dictionary.
    pub fn new() -> Result<Self, HeaderBlockError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(SPDY3_DICTIONARY)
            .map_err(|e| HeaderBlockError::Deflate(e.to_string()))?;
        Ok(Self { z })
    }

    /// Serialises and deflates `headers`, appending the compressed bytes to `out`.
    pub fn compress(
        &mut self,
        headers: &Headers,
        out: &mut Vec<u8>,
    ) -> Result<(), HeaderBlockError> {
        let raw = encode_name_values(headers)?;
        let start_in = self.z.total_in();
        loop {
            // compress_vec only writes into spare capacity; a sync flush is complete once a call
            // consumed all input and left room unused.
            out.reserve(raw.len() / 2 + 64);
            let consumed = (self.z.total_in() - start_in) as usize;
            self.z
                .compress_vec(&raw[consumed..], out, FlushCompress::Sync)
                .map_err(|e| HeaderBlockError::Deflate(e.to_string()))?;
            let consumed = (self.z.total_in() - start_in) as usize;
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

/// The receiving side's zlib stream.
pub struct HeaderDecompressor {
    z: Decompress,
    max_len: usize,
}

impl std::fmt::Debug for HeaderDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecompressor")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl HeaderDecompressor {
    /// A fresh stream; blocks may inflate to at most `max_len` bytes each.
    pub fn new(max_len: usize) -> Self {
        Self {
            z: Decompress::new(true),
            max_len,
        }
    }

    /// Inflates one block (the whole compressed payload of one frame) and parses it.
    pub fn decompress(&mut self, input: &[u8]) -> Result<Headers, HeaderBlockError> {
        let raw = self.inflate(input)?;
        decode_name_values(&raw)
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, HeaderBlockError> {
        let start_in = self.z.total_in();
        // Grow on demand up to max_len + 1, the extra byte telling "exactly full" from "too big".
        let cap_limit = self.max_len.saturating_add(1);
        let mut out: Vec<u8> =
            Vec::with_capacity(input.len().saturating_mul(4).clamp(64, cap_limit));
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap_limit {
                    return Err(HeaderBlockError::TooLarge { max: self.max_len });
                }
                let grow = out.len().max(256).min(cap_limit - out.len());
                out.reserve_exact(grow);
            }
            let consumed = (self.z.total_in() - start_in) as usize;
            let out_before = out.len();
            match self
                .z
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => return Err(HeaderBlockError::StreamEnded),
                Ok(Status::Ok) | Ok(Status::BufError) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(SPDY3_DICTIONARY)
                        .map_err(|e| HeaderBlockError::Inflate(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(HeaderBlockError::Inflate(e.to_string())),
            }
            if out.len() > self.max_len {
                return Err(HeaderBlockError::TooLarge { max: self.max_len });
            }
            let consumed_now = (self.z.total_in() - start_in) as usize;
            if consumed_now == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed_now == consumed && out.len() == out_before && out.len() < out.capacity() {
                // No progress with room to spare: the input is a truncated deflate stream.
                return Err(HeaderBlockError::Inflate(
                    "truncated compressed data (no progress)".into(),
                ));
            }
        }
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), HeaderBlockError> {
    let len = u32::try_from(len)
        .map_err(|_| HeaderBlockError::Layout("a field is longer than 2^32-1 bytes"))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The uncompressed name/value layout of `headers`.
pub fn encode_name_values(headers: &Headers) -> Result<Vec<u8>, HeaderBlockError> {
    let mut out = Vec::with_capacity(
        4 + headers
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len())
            .sum::<usize>(),
    );
    put_len(&mut out, headers.len())?;
    for (name, value) in headers.iter() {
        if name.is_empty() {
            return Err(HeaderBlockError::Layout("a header name is empty"));
        }
        put_len(&mut out, name.len())?;
        out.extend_from_slice(name.as_bytes());
        put_len(&mut out, value.len())?;
        out.extend_from_slice(value.as_bytes());
    }
    Ok(out)
}

/// Parses an uncompressed name/value block. Never allocates more than the input's size.
pub fn decode_name_values(raw: &[u8]) -> Result<Headers, HeaderBlockError> {
    let mut cur = raw;
    let count = take_u32(&mut cur)? as usize;
    // Each pair takes at least 8 bytes (two length fields): a count that cannot fit is a lie.
    if count > cur.len() / 8 {
        return Err(HeaderBlockError::Layout(
            "the pair count exceeds what the block can hold",
        ));
    }
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take_field(&mut cur)?;
        if name.is_empty() {
            return Err(HeaderBlockError::Layout("a header name is empty"));
        }
        let value = take_field(&mut cur)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| HeaderBlockError::NotUtf8)?
            .to_ascii_lowercase();
        let value = std::str::from_utf8(value).map_err(|_| HeaderBlockError::NotUtf8)?;
        if headers.contains(&name) {
            headers.insert(&name, value);
        } else {
            headers.push_raw(name, value.to_owned());
        }
    }
    if !cur.is_empty() {
        return Err(HeaderBlockError::Layout(
            "bytes left over after the last pair",
        ));
    }
    Ok(headers)
}

fn take_u32(cur: &mut &[u8]) -> Result<u32, HeaderBlockError> {
    let Some((head, rest)) = cur.split_first_chunk::<4>() else {
        return Err(HeaderBlockError::Layout("truncated length field"));
    };
    *cur = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_field<'a>(cur: &mut &'a [u8]) -> Result<&'a [u8], HeaderBlockError> {
    let len = take_u32(cur)? as usize;
    if len > cur.len() {
        return Err(HeaderBlockError::Layout(
            "a field runs past the end of the block",
        ));
    }
    let (field, rest) = cur.split_at(len);
    *cur = rest;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_blocks_shares_state() {
        let mut c = HeaderCompressor::new().unwrap();
        let mut d = HeaderDecompressor::new(1 << 16);
        for i in 0..5 {
            let h = Headers::new()
                .with("streamtype", "stdout")
                .with("x-index", i.to_string())
                .with("Multi", "a")
                .with("multi", "b");
            let mut buf = Vec::new();
            c.compress(&h, &mut buf).unwrap();
            let got = d.decompress(&buf).unwrap();
            assert_eq!(got, h);
            assert_eq!(got.get_all("multi").collect::<Vec<_>>(), ["a", "b"]);
        }
    }

    #[test]
    fn dictionary_is_used() {
        // A block made only of dictionary words compresses far better than its raw size.
        let h = Headers::new()
            .with("accept-encoding", "gzip,deflate")
            .with("content-type", "text/html");
        let raw = encode_name_values(&h).unwrap();
        let mut buf = Vec::new();
        HeaderCompressor::new()
            .unwrap()
            .compress(&h, &mut buf)
            .unwrap();
        assert!(buf.len() < raw.len(), "{} !< {}", buf.len(), raw.len());
        // zlib header with FDICT set, then the dictionary's Adler-32 (0xe3c6a7c2).
        assert_eq!(buf[1] & 0x20, 0x20);
        assert_eq!(&buf[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn bomb_is_bounded() {
        let big = "x".repeat(100_000);
        let h = Headers::new().with("a", big);
        let mut buf = Vec::new();
        HeaderCompressor::new()
            .unwrap()
            .compress(&h, &mut buf)
            .unwrap();
        let err = HeaderDecompressor::new(4096).decompress(&buf).unwrap_err();
        assert!(
            matches!(err, HeaderBlockError::TooLarge { max: 4096 }),
            "{err}"
        );
    }

    #[test]
    fn lying_count_is_refused_without_allocating() {
        let raw = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1];
        assert!(matches!(
            decode_name_values(&raw),
            Err(HeaderBlockError::Layout(_))
        ));
    }
}
