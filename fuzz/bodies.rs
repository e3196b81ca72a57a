//! What each fuzz target checks, shared by the cargo-fuzz targets (nightly) and the corpus
//! replay test in `core/tests/fuzz_corpus.rs` (stable, run by CI).

use serde::{Deserialize, Serialize};
use zmqrpc_core::stream::{self, Deframer, Feed};
use zmqrpc_core::{frame, Frame, Header, HEADER_LEN};

/// A body shape with the usual suspects: variable-length text and bytes, an enum, floats.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Probe {
    Sample {
        sensor: heapless::String<32>,
        celsius: f32,
        tags: heapless::Vec<u8, 16>,
    },
    Ping(u64),
    Nothing,
}

impl zmqrpc_core::Command for Probe {
    const NAME: &'static str = "fuzz.probe";
    type Response = Probe;
}

/// The frame decoder: any bytes decode to a frame or a typed error, never a panic; a frame
/// that decodes re-encodes to the same header, and a body that decodes re-encodes to the
/// same value.
pub fn frame_decode(data: &[u8]) {
    let Ok(decoded) = Frame::decode(data) else {
        return;
    };
    let mut header = [0u8; HEADER_LEN];
    decoded
        .header
        .write(&mut header)
        .expect("a header fits 14 bytes");
    assert_eq!(&header[..], &data[..HEADER_LEN]);
    assert_eq!(decoded.body, &data[HEADER_LEN..]);
    let mut buf = [0u8; 512];
    if let Ok(error) = decoded.remote_error() {
        let again = frame::encode(&decoded.header, &error, &mut buf).expect("fits");
        assert_eq!(
            Frame::decode(again).and_then(|f| f.remote_error()),
            Ok(error)
        );
    }
    if let Ok(probe) = decoded.body::<Probe>() {
        // postcard accepts overlong varints, so the canonical re-encoding may be shorter than
        // the input; it must decode to the same value (compared as bytes: floats may be NaN).
        let again = frame::encode(&decoded.header, &probe, &mut buf)
            .expect("fits")
            .to_vec();
        let reparsed: Probe = Frame::decode(&again)
            .and_then(|f| f.body())
            .expect("canonical");
        let mut twice = [0u8; 512];
        let twice = frame::encode(&decoded.header, &reparsed, &mut twice).expect("fits");
        assert_eq!(again, twice);
        assert!(again.len() <= data.len());
    }
    let _ = decoded.body::<(u32, bool, Option<i16>)>();
    let _ = Header::read(data);
}

/// The stream deframer: any byte stream, fed in any split, yields frames no larger than its
/// buffer or typed errors, never a panic; every frame it yields survives a re-encode.
pub fn stream_deframe(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split % 16) + 1;
    let mut deframer: Deframer<64> = Deframer::new();
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        loop {
            match deframer.feed(rest) {
                Feed::NeedMore => break,
                Feed::Frame { frame, rest: more } => {
                    assert!(frame.len() <= 64);
                    let mut encoded = [0u8; 80];
                    let bytes = stream::encode(frame, &mut encoded).expect("a 64-byte frame fits");
                    let mut check: Deframer<80> = Deframer::new();
                    match check.feed(bytes) {
                        Feed::Frame {
                            frame: again,
                            rest: [],
                        } => assert_eq!(again, frame),
                        other => panic!(
                            "re-encoded frame {frame:?} as {bytes:?} did not decode: {other:?}"
                        ),
                    }
                    rest = more;
                }
                Feed::Error { rest: more, .. } => rest = more,
            }
        }
    }
}

/// The device server: any byte stream from a serial link is served frame by frame, never a
/// panic; damaged frames are counted, not answered; every answer written back is a whole
/// frame (an answer or a heartbeat) that the host can read.
pub fn device_serve(data: &[u8]) {
    use zmqrpc_core::device::{on, DeviceServer, Failure, ServeError};
    use zmqrpc_core::stream::{FrameReader, FrameWriter, StreamError};
    use zmqrpc_core::{Command, Kind};

    #[derive(Serialize, Deserialize)]
    struct Led(bool);
    impl Command for Led {
        const NAME: &'static str = "fuzz.led";
        type Response = bool;
    }
    let mut led = on(|Led(on): Led| if on { Ok(on) } else { Err(Failure("off")) });
    let mut probe = on(|p: Probe| Ok::<_, Failure>(p));
    let mut server: DeviceServer<'_, 2> = DeviceServer::new();
    server.register(&mut led).expect("room for two");
    server.register(&mut probe).expect("room for two");
    let mut reader: FrameReader<&[u8], 128, 16> = FrameReader::new(data);
    let mut writer: FrameWriter<Vec<u8>, 160> = FrameWriter::new(Vec::new());
    let mut out = [0u8; 128];
    loop {
        match server.serve_next(&mut reader, &mut writer, &mut out) {
            Ok(()) => {}
            Err(ServeError::Read(StreamError::Eof)) => break,
            Err(other) => panic!("an in-memory stream cannot fail: {other:?}"),
        }
    }
    let answers = writer.into_inner();
    let mut back: FrameReader<&[u8], 160> = FrameReader::new(&answers[..]);
    loop {
        match back.read_frame() {
            Ok(bytes) => {
                let frame = Frame::decode(bytes).expect("the server writes whole frames");
                assert!(matches!(
                    frame.header.kind,
                    Kind::Reply | Kind::Error | Kind::Heartbeat
                ));
            }
            Err(StreamError::Eof) => break,
            Err(other) => panic!("the server's own stream is clean: {other:?}"),
        }
    }
}
