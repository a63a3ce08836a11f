//! Incremental frame parsing and serialisation.
//!
//! [`Decoder::decode`] looks at a growing input buffer and either asks for more bytes, or removes
//! exactly one frame from it, or fails. It allocates only after the whole frame is buffered and
//! its length checked against [`Decoder`]'s bound, so a length field can never make it reserve
//! memory the peer has not actually sent. [`Encoder::encode`] appends one frame.
//!
//! Both own their direction's zlib header stream (see [`crate::header_block`]), so one connection
//! needs exactly one `Decoder` and one `Encoder`, used in wire order.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::CodecError;
use crate::frame::{
    FLAG_CLEAR_SETTINGS, FLAG_FIN, FLAG_UNIDIRECTIONAL, Frame, GoAwayStatus, Headers,
    MAX_PAYLOAD_LEN, RstStatus, Setting, SynStream, VERSION, kind,
};
use crate::header_block::{HeaderCompressor, HeaderDecompressor};

/// The fixed frame header size.
pub const FRAME_HEADER_LEN: usize = 8;

/// What [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The buffer holds no complete frame; at least this many more bytes are needed.
    NeedMore(usize),
    /// One frame, removed from the buffer.
    Frame(Frame),
}

/// Parses frames of one direction of a connection.
#[derive(Debug)]
pub struct Decoder {
    inflater: HeaderDecompressor,
    max_frame_len: usize,
}

impl Decoder {
    /// `max_frame_len` bounds any frame's payload (at most the protocol's 2^24 - 1);
    /// `max_header_block_len` bounds each header block after inflation.
    pub fn new(max_frame_len: usize, max_header_block_len: usize) -> Self {
        Self {
            inflater: HeaderDecompressor::new(max_header_block_len),
            max_frame_len: max_frame_len.min(MAX_PAYLOAD_LEN),
        }
    }

    /// Takes one frame off the front of `buf` if a whole one is there.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        let Some(head) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(Decoded::NeedMore(FRAME_HEADER_LEN - buf.len()));
        };
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let control = word & 0x8000_0000 != 0;
        if len > self.max_frame_len {
            return Err(CodecError::FrameTooLarge {
                kind: if control { "control" } else { "data" },
                len,
                max: self.max_frame_len,
            });
        }
        if control {
            let version = ((word >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(CodecError::UnsupportedVersion(version));
            }
        }
        let total = FRAME_HEADER_LEN + len;
        if buf.len() < total {
            return Ok(Decoded::NeedMore(total - buf.len()));
        }
        let mut frame = buf.split_to(total).freeze();
        frame.advance(FRAME_HEADER_LEN);
        let payload = frame;
        let parsed = if control {
            self.control((word & 0xffff) as u16, flags, payload)?
        } else {
            let stream_id = word & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(malformed("data", "stream id 0"));
            }
            Frame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }
        };
        Ok(Decoded::Frame(parsed))
    }

    fn headers(&mut self, frame: &'static str, block: &[u8]) -> Result<Headers, CodecError> {
        // Deviation: an absent block is read as "no headers" instead of refused.
        if block.is_empty() {
            return Ok(Headers::new());
        }
        self.inflater
            .decompress(block)
            .map_err(|source| CodecError::HeaderBlock { frame, source })
    }

    fn control(&mut self, ty: u16, flags: u8, mut p: Bytes) -> Result<Frame, CodecError> {
        let fin = flags & FLAG_FIN != 0;
        Ok(match ty {
            kind::SYN_STREAM => {
                const NAME: &str = "SYN_STREAM";
                if p.len() < 10 {
                    return Err(malformed(NAME, "shorter than its 10 fixed bytes"));
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                let headers = self.headers(NAME, &p)?;
                if stream_id == 0 {
                    return Err(malformed(NAME, "stream id 0"));
                }
                Frame::SynStream(SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                })
            }
            kind::SYN_REPLY | kind::HEADERS => {
                let name = if ty == kind::SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                if p.len() < 4 {
                    return Err(malformed(name, "shorter than its 4 fixed bytes"));
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.headers(name, &p)?;
                if stream_id == 0 {
                    return Err(malformed(name, "stream id 0"));
                }
                if ty == kind::SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            kind::RST_STREAM => {
                const NAME: &str = "RST_STREAM";
                if p.len() != 8 {
                    return Err(malformed(NAME, "length is not 8"));
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let code = p.get_u32();
                if stream_id == 0 {
                    return Err(malformed(NAME, "stream id 0"));
                }
                if code == 0 {
                    return Err(malformed(NAME, "status code 0"));
                }
                Frame::RstStream {
                    stream_id,
                    status: RstStatus::from_code(code),
                }
            }
            kind::SETTINGS => {
                const NAME: &str = "SETTINGS";
                if p.len() < 4 {
                    return Err(malformed(NAME, "shorter than its entry count"));
                }
                let n = p.get_u32() as usize;
                if n.checked_mul(8) != Some(p.len()) {
                    return Err(malformed(NAME, "entry count does not match its length"));
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let id_word = p.get_u32();
                    let value = p.get_u32();
                    entries.push(Setting {
                        flags: (id_word >> 24) as u8,
                        id: id_word & 0x00ff_ffff,
                        value,
                    });
                }
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            kind::PING => {
                if p.len() != 4 {
                    return Err(malformed("PING", "length is not 4"));
                }
                Frame::Ping { id: p.get_u32() }
            }
            kind::GOAWAY => {
                if p.len() != 8 {
                    return Err(malformed("GOAWAY", "length is not 8"));
                }
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                let status = GoAwayStatus::from_code(p.get_u32());
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            kind::WINDOW_UPDATE => {
                const NAME: &str = "WINDOW_UPDATE";
                if p.len() != 8 {
                    return Err(malformed(NAME, "length is not 8"));
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let delta = p.get_u32() & 0x7fff_ffff;
                if delta == 0 {
                    return Err(malformed(NAME, "delta 0"));
                }
                Frame::WindowUpdate { stream_id, delta }
            }
            other => Frame::Unknown {
                frame_type: other,
                flags,
                len: p.len(),
            },
        })
    }
}

fn malformed(frame: &'static str, reason: &'static str) -> CodecError {
    CodecError::Malformed { frame, reason }
}

/// Serialises frames of one direction of a connection.
#[derive(Debug)]
pub struct Encoder {
    deflater: HeaderCompressor,
    scratch: Vec<u8>,
}

impl Encoder {
    /// A fresh encoder (its own zlib stream).
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            deflater: HeaderCompressor::new().map_err(|source| CodecError::HeaderBlock {
                frame: "any",
                source,
            })?,
            scratch: Vec::new(),
        })
    }

    /// Appends `frame`'s bytes to `out`. Fails only for frames that cannot be represented
    /// (payload over 2^24 - 1 bytes, stream id or delta out of range, empty header name).
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), CodecError> {
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                check_id("data", *stream_id, false)?;
                check_len("data", data.len())?;
                out.reserve(FRAME_HEADER_LEN + data.len());
                out.put_u32(*stream_id);
                put_flags_len(out, u8::from(*fin) * FLAG_FIN, data.len());
                out.put_slice(data);
            }
            Frame::SynStream(s) => {
                check_id("SYN_STREAM", s.stream_id, false)?;
                check_id("SYN_STREAM", s.associated_to, true)?;
                let mut fixed = [0u8; 10];
                fixed[0..4].copy_from_slice(&s.stream_id.to_be_bytes());
                fixed[4..8].copy_from_slice(&s.associated_to.to_be_bytes());
                fixed[8] = (s.priority & 0x7) << 5;
                fixed[9] = s.slot;
                let flags = (u8::from(s.fin) * FLAG_FIN)
                    | (u8::from(s.unidirectional) * FLAG_UNIDIRECTIONAL);
                self.header_frame(
                    "SYN_STREAM",
                    kind::SYN_STREAM,
                    flags,
                    &fixed,
                    &s.headers,
                    out,
                )?;
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let (name, ty) = if matches!(frame, Frame::SynReply { .. }) {
                    ("SYN_REPLY", kind::SYN_REPLY)
                } else {
                    ("HEADERS", kind::HEADERS)
                };
                check_id(name, *stream_id, false)?;
                let fixed = stream_id.to_be_bytes();
                self.header_frame(name, ty, u8::from(*fin) * FLAG_FIN, &fixed, headers, out)?;
            }
            Frame::RstStream { stream_id, status } => {
                check_id("RST_STREAM", *stream_id, false)?;
                put_control(out, kind::RST_STREAM, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(status.code());
            }
            Frame::Settings { clear, entries } => {
                let len = entries
                    .len()
                    .checked_mul(8)
                    .and_then(|l| l.checked_add(4))
                    .filter(|l| *l <= MAX_PAYLOAD_LEN)
                    .ok_or(malformed("SETTINGS", "too many entries"))?;
                put_control(
                    out,
                    kind::SETTINGS,
                    u8::from(*clear) * FLAG_CLEAR_SETTINGS,
                    len,
                );
                out.put_u32(entries.len() as u32);
                for e in entries {
                    if e.id > 0x00ff_ffff {
                        return Err(malformed("SETTINGS", "id wider than 24 bits"));
                    }
                    out.put_u32(u32::from(e.flags) << 24 | e.id);
                    out.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                put_control(out, kind::PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                check_id("GOAWAY", *last_good_stream_id, true)?;
                put_control(out, kind::GOAWAY, 0, 8);
                out.put_u32(*last_good_stream_id);
                out.put_u32(status.code());
            }
            Frame::WindowUpdate { stream_id, delta } => {
                check_id("WINDOW_UPDATE", *stream_id, true)?;
                if *delta == 0 || *delta > 0x7fff_ffff {
                    return Err(malformed("WINDOW_UPDATE", "delta outside 1 ..= 2^31-1"));
                }
                put_control(out, kind::WINDOW_UPDATE, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*delta);
            }
            Frame::Unknown {
                frame_type,
                flags,
                len,
            } => {
                check_len("unknown", *len)?;
                put_control(out, *frame_type, *flags, *len);
                out.put_bytes(0, *len);
            }
        }
        Ok(())
    }

    fn header_frame(
        &mut self,
        name: &'static str,
        ty: u16,
        flags: u8,
        fixed: &[u8],
        headers: &Headers,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        self.scratch.clear();
        self.deflater
            .compress(headers, &mut self.scratch)
            .map_err(|source| CodecError::HeaderBlock {
                frame: name,
                source,
            })?;
        let len = fixed.len() + self.scratch.len();
        check_len(name, len)?;
        out.reserve(FRAME_HEADER_LEN + len);
        put_control(out, ty, flags, len);
        out.put_slice(fixed);
        out.put_slice(&self.scratch);
        Ok(())
    }
}

fn check_id(frame: &'static str, id: u32, zero_ok: bool) -> Result<(), CodecError> {
    if id > 0x7fff_ffff {
        return Err(malformed(frame, "stream id wider than 31 bits"));
    }
    if id == 0 && !zero_ok {
        return Err(malformed(frame, "stream id 0"));
    }
    Ok(())
}

fn check_len(frame: &'static str, len: usize) -> Result<(), CodecError> {
    if len > MAX_PAYLOAD_LEN {
        return Err(CodecError::FrameTooLarge {
            kind: frame,
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    Ok(())
}

fn put_control(out: &mut BytesMut, ty: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(ty);
    put_flags_len(out, flags, len);
}

fn put_flags_len(out: &mut BytesMut, flags: u8, len: usize) {
    // Callers have checked len <= 2^24 - 1.
    out.put_u32(u32::from(flags) << 24 | (len as u32 & 0x00ff_ffff));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: &[Frame]) {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new(MAX_PAYLOAD_LEN, 1 << 20);
        let mut wire = BytesMut::new();
        for f in frames {
            enc.encode(f, &mut wire).unwrap();
        }
        // Feed byte by byte to exercise NeedMore.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Decoded::Frame(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got, frames);
    }

    #[test]
    fn every_frame_type_round_trips() {
        let h = Headers::new()
            .with("streamtype", "stdin")
            .with("port", "80");
        round_trip(&[
            Frame::SynStream(SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 7,
                slot: 0,
                fin: false,
                unidirectional: true,
                headers: h.clone(),
            }),
            Frame::SynReply {
                stream_id: 1,
                fin: true,
                headers: Headers::new(),
            },
            Frame::Headers {
                stream_id: 1,
                fin: false,
                headers: h,
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::RstStream {
                stream_id: 3,
                status: RstStatus::Cancel,
            },
            Frame::Settings {
                clear: true,
                entries: vec![Setting {
                    flags: 1,
                    id: 7,
                    value: 1 << 20,
                }],
            },
            Frame::Ping { id: 2 },
            Frame::GoAway {
                last_good_stream_id: 5,
                status: GoAwayStatus::Ok,
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 4096,
            },
            Frame::Unknown {
                frame_type: 10,
                flags: 0,
                len: 3,
            },
        ]);
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut dec = Decoder::new(1024, 1024);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 1, 0, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(CodecError::FrameTooLarge { len: 0xff_ffff, .. })
        ));
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut dec = Decoder::new(1024, 1024);
        let mut buf = BytesMut::from(&[0x80u8, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(CodecError::UnsupportedVersion(2))
        ));
    }
}
