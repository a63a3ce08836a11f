//! Arbitrary bytes into the frame decoder (header blocks included) and the name/value parser.
//! The property: no panic, no unbounded allocation, every error is a `CodecError`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use spdy3::codec::{Decoded, Decoder};
use spdy3::header_block::{HeaderDecompressor, decode_name_values};

fuzz_target!(|data: &[u8]| {
    // First byte: chunk size for incremental feeding (exercises NeedMore paths).
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut dec = Decoder::new(1 << 16, 1 << 16);
    let mut buf = BytesMut::new();
    'feed: for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Decoded::Frame(_)) => {}
                Ok(Decoded::NeedMore(n)) => {
                    assert!(n > 0);
                    break;
                }
                Err(_) => break 'feed,
            }
        }
    }
    let _ = decode_name_values(rest);
    let _ = HeaderDecompressor::new(1 << 14).decompress(rest);
});
