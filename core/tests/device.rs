//! The device server: typed answers, every kind of bad input answered or counted, never a
//! panic, and a link that resynchronises after noise.
#![allow(clippy::unwrap_used)]

use serde::{Deserialize, Serialize};
use zmqrpc_core::device::{
    notify, on, DeviceServer, DeviceStats, Failure, RegisterError, ServeError,
};
use zmqrpc_core::stream::{self, FrameReader, FrameWriter, StreamError};
use zmqrpc_core::{frame, Command, ErrorCode, Frame, Header, Key, Kind};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SetLed {
    on: bool,
}
impl Command for SetLed {
    const NAME: &'static str = "led.set";
    type Response = bool;
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct ReadTemp;
impl Command for ReadTemp {
    const NAME: &'static str = "temp.read";
    type Response = i16;
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sample {
    millidegrees: i32,
}
impl Command for Sample {
    const NAME: &'static str = "temp.sample";
    type Response = ();
}

fn request<C: Command>(seq: u32, command: &C) -> Vec<u8> {
    let mut buf = [0u8; 64];
    frame::encode(&Header::request(seq, C::KEY), command, &mut buf)
        .unwrap()
        .to_vec()
}

fn error_of(answer: &[u8]) -> (Header, ErrorCode) {
    let frame = Frame::decode(answer).unwrap();
    (frame.header, frame.remote_error().unwrap().code)
}

#[test]
fn requests_get_typed_answers_and_failures_get_errors() {
    let mut led = false;
    let mut set_led = on(|c: SetLed| {
        led = c.on;
        Ok(led)
    });
    let mut read_temp = on(|_: ReadTemp| Err::<i16, _>(Failure("sensor absent")));
    let mut server: DeviceServer<'_, 2> = DeviceServer::new();
    server.register(&mut set_led).unwrap();
    server.register(&mut read_temp).unwrap();
    let mut out = [0u8; 128];

    let answer = server
        .dispatch(&request(7, &SetLed { on: true }), &mut out)
        .unwrap();
    let frame = Frame::decode(answer).unwrap();
    assert_eq!(frame.header, Header::request(7, SetLed::KEY).reply());
    assert_eq!(frame.outcome::<bool>(), Ok(Ok(true)));

    let answer = server.dispatch(&request(8, &ReadTemp), &mut out).unwrap();
    let frame = Frame::decode(answer).unwrap();
    assert_eq!(frame.header, Header::request(8, ReadTemp::KEY).error());
    let error = frame.remote_error().unwrap();
    assert_eq!(
        (error.code, error.message.as_str()),
        (ErrorCode::ServiceFailed, "sensor absent")
    );

    let answer = server
        .dispatch(&request(9, &Sample { millidegrees: 1 }), &mut out)
        .unwrap();
    assert_eq!(
        error_of(answer),
        (
            Header::request(9, Sample::KEY).error(),
            ErrorCode::UnknownCommand
        )
    );
    assert_eq!(
        server.stats(),
        DeviceStats {
            served: 1,
            failed: 1,
            unknown: 1,
            ..DeviceStats::default()
        }
    );
    drop(server);
    assert!(led);
}

#[test]
fn bad_input_is_answered_or_counted_and_never_panics() {
    let mut set_led = on(|c: SetLed| Ok(c.on));
    let mut server: DeviceServer<'_, 1> = DeviceServer::new();
    server.register(&mut set_led).unwrap();
    let mut out = [0u8; 128];
    // Unreadable: the unaddressed error, which any waiting call takes.
    for (bytes, code) in [
        (&b""[..], ErrorCode::BadFrame),
        (b"\x01\x00short", ErrorCode::BadFrame),
        (b"\x09 a later version", ErrorCode::VersionMismatch),
    ] {
        let answer = server.dispatch(bytes, &mut out).unwrap();
        assert_eq!(error_of(answer), (Header::UNREADABLE.error(), code));
    }
    // A body of the wrong shape: the request's own error.
    let mut buf = [0u8; 64];
    let wrong = frame::encode(&Header::request(3, SetLed::KEY), &7u32, &mut buf).unwrap();
    let answer = server.dispatch(wrong, &mut out).unwrap();
    assert_eq!(
        error_of(answer),
        (Header::request(3, SetLed::KEY).error(), ErrorCode::BadFrame)
    );
    // Answers are not for a server: counted, not answered.
    let reply = frame::encode(&Header::request(3, SetLed::KEY).reply(), &true, &mut buf).unwrap();
    assert_eq!(server.dispatch(reply, &mut out), None);
    // An answer buffer too small for any answer: no answer, no panic.
    assert_eq!(
        server.dispatch(&request(4, &SetLed { on: true }), &mut [0u8; 4]),
        None
    );
    // Random bytes.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2000 {
        let len = (state % 48) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = server.dispatch(&bytes, &mut out);
    }
    // Still serving.
    let answer = server
        .dispatch(&request(5, &SetLed { on: false }), &mut out)
        .unwrap();
    assert_eq!(
        Frame::decode(answer).unwrap().outcome::<bool>(),
        Ok(Ok(false))
    );
}

#[test]
fn notifications_run_without_an_answer_and_heartbeats_are_echoed() {
    let mut seen = Vec::new();
    let mut sample = on(|s: Sample| {
        seen.push(s.millidegrees);
        Ok(())
    });
    let mut server: DeviceServer<'_, 1> = DeviceServer::new();
    server.register(&mut sample).unwrap();
    let mut buf = [0u8; 64];
    let mut out = [0u8; 64];
    let notification = frame::encode(
        &Header::notify(Sample::KEY),
        &Sample {
            millidegrees: 21_500,
        },
        &mut buf,
    )
    .unwrap();
    assert_eq!(server.dispatch(notification, &mut out), None);
    assert_eq!(
        server.dispatch(&frame::HEARTBEAT, &mut out),
        Some(&frame::HEARTBEAT[..])
    );
    assert_eq!(server.stats().heartbeats, 1);
    drop(server);
    assert_eq!(seen, [21_500]);
}

#[test]
fn a_second_handler_for_a_key_or_one_too_many_is_refused() {
    let mut first = on(|c: SetLed| Ok(c.on));
    let mut second = on(|c: SetLed| Ok(!c.on));
    let mut temp = on(|_: ReadTemp| Ok(0));
    let mut server: DeviceServer<'_, 1> = DeviceServer::new();
    server.register(&mut first).unwrap();
    assert_eq!(
        server.register(&mut second),
        Err(RegisterError::DuplicateKey {
            name: "led.set",
            existing: "led.set"
        })
    );
    assert_eq!(server.register(&mut temp), Err(RegisterError::Full));
}

/// Encodes `frames` for a stream, with `noise` between the first and the rest.
fn stream_of(frames: &[Vec<u8>], noise: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        if i == 1 {
            bytes.extend_from_slice(noise);
        }
        let mut buf = [0u8; 128];
        bytes.extend_from_slice(stream::encode(frame, &mut buf).unwrap());
    }
    bytes
}

#[test]
fn over_a_stream_noise_costs_only_the_frames_it_hits() {
    let mut set_led = on(|c: SetLed| Ok(c.on));
    let mut server: DeviceServer<'_, 1> = DeviceServer::new();
    server.register(&mut set_led).unwrap();
    // Line noise: a corrupt COBS run and an oversize run, each ended by a delimiter.
    let mut noise = vec![0x05, 0x01, 0x00];
    noise.extend(std::iter::repeat_n(0x41, 200));
    noise.push(0x00);
    let input = stream_of(
        &[
            request(1, &SetLed { on: true }),
            request(2, &SetLed { on: false }),
        ],
        &noise,
    );
    let mut reader: FrameReader<&[u8], 64> = FrameReader::new(&input[..]);
    let mut writer: FrameWriter<Vec<u8>, 80> = FrameWriter::new(Vec::new());
    let mut out = [0u8; 64];
    server
        .serve_next(&mut reader, &mut writer, &mut out)
        .unwrap();
    server
        .serve_next(&mut reader, &mut writer, &mut out)
        .unwrap();
    assert!(matches!(
        server.serve_next(&mut reader, &mut writer, &mut out),
        Err(ServeError::Read(StreamError::Eof))
    ));
    assert_eq!(server.stats().link_errors, 2);
    // Both answers, in order, on the stream back.
    let answers = writer.into_inner();
    let mut back: FrameReader<&[u8], 64> = FrameReader::new(&answers[..]);
    for (seq, on) in [(1, true), (2, false)] {
        let frame = Frame::decode(back.read_frame().unwrap()).unwrap();
        assert_eq!(frame.header, Header::request(seq, SetLed::KEY).reply());
        assert_eq!(frame.outcome::<bool>(), Ok(Ok(on)));
    }
}

#[test]
fn the_device_sends_its_own_notifications() {
    let mut writer: FrameWriter<Vec<u8>, 64> = FrameWriter::new(Vec::new());
    let mut buf = [0u8; 32];
    notify(
        &mut writer,
        &Sample {
            millidegrees: -4_000,
        },
        &mut buf,
    )
    .unwrap();
    let bytes = writer.into_inner();
    let mut reader: FrameReader<&[u8], 64> = FrameReader::new(&bytes[..]);
    let frame = Frame::decode(reader.read_frame().unwrap()).unwrap();
    assert_eq!(
        (frame.header.kind, frame.header.key),
        (Kind::Notify, Key::of("temp.sample"))
    );
    assert_eq!(
        frame.body::<Sample>().unwrap(),
        Sample {
            millidegrees: -4_000
        }
    );
}
