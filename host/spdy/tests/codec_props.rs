//! Property tests of the frame codec and header blocks (the bounded CI counterpart of the
//! cargo-fuzz target in `fuzz/`): arbitrary bytes never panic the decoder, the header block
//! decoder or a live session, and every representable frame sequence survives encode → decode,
//! however the bytes are split.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spdy3::codec::{Decoded, Decoder, Encoder};
use spdy3::frame::{GoAwayStatus, MAX_PAYLOAD_LEN, RstStatus, Setting, SynStream};
use spdy3::header_block::{HeaderDecompressor, decode_name_values};
use spdy3::{Config, Frame, Headers, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stream_id() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..12, 1u32..=0x7fff_ffff]
}

fn headers() -> impl Strategy<Value = Headers> {
    prop::collection::vec(("[a-zA-Z][a-z0-9-]{0,12}", "[ -~]{0,24}"), 0..6)
        .prop_map(|pairs| pairs.into_iter().collect::<Headers>())
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            stream_id(),
            0u32..=0x7fff_ffff,
            0u8..8,
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            headers()
        )
            .prop_map(
                |(stream_id, associated_to, priority, slot, fin, unidirectional, headers)| {
                    Frame::SynStream(SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        slot,
                        fin,
                        unidirectional,
                        headers,
                    })
                }
            ),
        (stream_id(), any::<bool>(), headers()).prop_map(|(stream_id, fin, headers)| {
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
        }),
        (stream_id(), any::<bool>(), headers()).prop_map(|(stream_id, fin, headers)| {
            Frame::Headers {
                stream_id,
                fin,
                headers,
            }
        }),
        (stream_id(), 1u32..=u32::MAX).prop_map(|(stream_id, c)| Frame::RstStream {
            stream_id,
            status: RstStatus::from_code(c)
        }),
        (
            any::<bool>(),
            prop::collection::vec((any::<u8>(), 0u32..=0xff_ffff, any::<u32>()), 0..5)
        )
            .prop_map(|(clear, e)| Frame::Settings {
                clear,
                entries: e
                    .into_iter()
                    .map(|(flags, id, value)| Setting { flags, id, value })
                    .collect(),
            }),
        any::<u32>().prop_map(|id| Frame::Ping { id }),
        (0u32..=0x7fff_ffff, any::<u32>()).prop_map(|(last_good_stream_id, c)| Frame::GoAway {
            last_good_stream_id,
            status: GoAwayStatus::from_code(c)
        }),
        (0u32..=0x7fff_ffff, 1u32..=0x7fff_ffff)
            .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
        (
            stream_id(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..3000)
        )
            .prop_map(|(stream_id, fin, d)| Frame::Data {
                stream_id,
                fin,
                data: Bytes::from(d)
            }),
        (
            prop_oneof![Just(0u16), Just(5u16), 10u16..=u16::MAX],
            any::<u8>(),
            0usize..64
        )
            .prop_map(|(frame_type, flags, len)| Frame::Unknown {
                frame_type,
                flags,
                len
            }),
    ]
}

/// Decodes everything in `wire`, fed in chunks of the given sizes (cycled).
fn decode_chunked(
    dec: &mut Decoder,
    wire: &[u8],
    chunks: &[usize],
) -> Result<Vec<Frame>, spdy3::CodecError> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < wire.len() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(wire.len())
            .max(1);
        i += 1;
        let end = (pos + n).min(wire.len());
        buf.extend_from_slice(&wire[pos..end]);
        pos = end;
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Frame(f) => frames.push(f),
                Decoded::NeedMore(need) => {
                    assert!(need > 0);
                    break;
                }
            }
        }
    }
    Ok(frames)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip(frames in prop::collection::vec(frame(), 1..12),
                         chunks in prop::collection::vec(1usize..700, 1..8)) {
        let mut enc = Encoder::new().unwrap();
        let mut wire = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = Decoder::new(MAX_PAYLOAD_LEN, 1 << 20);
        let got = decode_chunked(&mut dec, &wire, &chunks).unwrap();
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..4096),
                                               chunks in prop::collection::vec(1usize..64, 1..4)) {
        let mut dec = Decoder::new(1 << 16, 1 << 16);
        let _ = decode_chunked(&mut dec, &bytes, &chunks);
    }

    #[test]
    fn corrupted_valid_streams_never_panic(frames in prop::collection::vec(frame(), 1..6),
                                           flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut enc = Encoder::new().unwrap();
        let mut wire = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut wire = wire.to_vec();
        for (at, x) in flips {
            let i = at.index(wire.len());
            wire[i] ^= x;
        }
        let mut dec = Decoder::new(1 << 16, 1 << 16);
        let _ = decode_chunked(&mut dec, &wire, &[wire.len()]);
    }

    #[test]
    fn arbitrary_header_blocks_never_panic(block in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_name_values(&block);
        let mut z = HeaderDecompressor::new(1 << 14);
        let _ = z.decompress(&block);
        // zlib-wrapped with the right dictionary id, then garbage: exercises the inflater proper.
        let mut primed = vec![0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2];
        primed.extend_from_slice(&block);
        let _ = HeaderDecompressor::new(1 << 14).decompress(&primed);
    }
}

static PANICKED: AtomicBool = AtomicBool::new(false);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A live server session fed arbitrary (validly framed, semantically random) frames and then
    /// garbage neither panics (its tasks included) nor hangs.
    #[test]
    fn sessions_survive_arbitrary_frames(frames in prop::collection::vec(frame(), 0..24),
                                         tail in prop::collection::vec(any::<u8>(), 0..64),
                                         strict in any::<bool>()) {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            hook(info);
        }));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let cfg = if strict { Config::strict() } else { Config::default() };
            let (session, mut incoming) = Session::server(b, cfg);
            tokio::spawn(async move {
                while let Some(inc) = incoming.accept().await {
                    let mut s = inc.accept(Headers::new());
                    tokio::spawn(async move {
                        let mut buf = [0u8; 512];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = s.shutdown().await;
                    });
                }
            });
            let mut enc = Encoder::new().unwrap();
            let mut wire = BytesMut::new();
            for f in &frames {
                enc.encode(f, &mut wire).unwrap();
            }
            wire.extend_from_slice(&tail);
            let drain = tokio::spawn(async move {
                let _ = a.write_all(&wire).await;
                let mut sink = vec![0u8; 1 << 16];
                while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), a.read(&mut sink)).await {
                    if n == 0 {
                        break;
                    }
                }
            });
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
            session.abort();
        });
        prop_assert!(!PANICKED.load(Ordering::SeqCst), "a session task panicked");
    }
}
