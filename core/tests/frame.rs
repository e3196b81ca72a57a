//! The wire frame: round trips, and every malformed input is a typed error.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

use serde::{Deserialize, Serialize};
use zmqrpc_core::{
    frame, Command, DecodeError, EncodeError, ErrorCode, Frame, Header, Key, Kind, RemoteError,
    HEADER_LEN, VERSION,
};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Sample {
    sensor: heapless::String<16>,
    celsius: f32,
    seq: u64,
    tags: heapless::Vec<u8, 8>,
}

impl Command for Sample {
    const NAME: &'static str = "sensor.sample";
    type Response = u32;
}

fn sample() -> Sample {
    Sample {
        sensor: heapless::String::try_from("greenhouse-1").unwrap(),
        celsius: 21.5,
        seq: 1 << 40,
        tags: heapless::Vec::from_slice(&[1, 2, 3]).unwrap(),
    }
}

#[test]
fn every_kind_round_trips() {
    let request = Header::request(0xDEAD_BEEF, Sample::KEY);
    let mut buf = [0u8; 128];

    let bytes = frame::encode(&request, &sample(), &mut buf)
        .unwrap()
        .to_vec();
    let f = Frame::decode(&bytes).unwrap();
    assert_eq!(f.header, request);
    assert_eq!(f.body::<Sample>().unwrap(), sample());

    let notify = Header::notify(Sample::KEY);
    let bytes = frame::encode(&notify, &sample(), &mut buf)
        .unwrap()
        .to_vec();
    let f = Frame::decode(&bytes).unwrap();
    assert_eq!((f.header.kind, f.header.seq), (Kind::Notify, 0));
    assert_eq!(f.body::<Sample>().unwrap(), sample());

    let bytes = frame::encode(&request.reply(), &42u32, &mut buf)
        .unwrap()
        .to_vec();
    let f = Frame::decode(&bytes).unwrap();
    assert!(request.is_answered_by(&f.header));
    assert_eq!(f.header.kind, Kind::Reply);
    assert_eq!(f.body::<u32>().unwrap(), 42);

    let err = RemoteError::new(ErrorCode::ServiceFailed, "sensor offline");
    let bytes = frame::encode(&request.error(), &err, &mut buf)
        .unwrap()
        .to_vec();
    let f = Frame::decode(&bytes).unwrap();
    assert!(request.is_answered_by(&f.header));
    assert_eq!(f.header.kind, Kind::Error);
    assert_eq!(f.remote_error().unwrap(), err);
}

#[test]
fn heartbeat_is_a_bodiless_frame_of_its_own_kind() {
    let f = Frame::decode(&frame::HEARTBEAT).unwrap();
    assert_eq!(f.header.kind, Kind::Heartbeat);
    assert!(f.body.is_empty());
    assert!(frame::is_heartbeat(&frame::HEARTBEAT));
    let mut buf = [0u8; 32];
    let notify = frame::encode(&Header::notify(Key(0)), &(), &mut buf).unwrap();
    assert!(!frame::is_heartbeat(notify));
    assert!(!frame::is_heartbeat(&frame::HEARTBEAT[..5]));
}

#[test]
fn header_layout_matches_the_design() {
    let mut buf = [0u8; 32];
    let header = Header::request(0x0403_0201, Key(0x0807_0605_0403_0201));
    let bytes = frame::encode(&header, &(), &mut buf).unwrap();
    assert_eq!(
        bytes,
        &[VERSION, 0, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8][..],
        "version, kind, seq LE, key LE, empty body"
    );
    assert_eq!(bytes.len(), HEADER_LEN);
}

#[test]
fn a_reply_from_another_call_does_not_match() {
    let request = Header::request(5, Sample::KEY);
    assert!(!request.is_answered_by(&Header::request(6, Sample::KEY).reply()));
    assert!(!request.is_answered_by(&Header::request(5, Key::of("other")).reply()));
    assert!(
        !request.is_answered_by(&request),
        "a request is not an answer"
    );
}

#[test]
fn every_truncation_is_a_typed_error() {
    let mut buf = [0u8; 128];
    let bytes = frame::encode(&Header::request(9, Sample::KEY), &sample(), &mut buf)
        .unwrap()
        .to_vec();
    for cut in 0..bytes.len() {
        let short = &bytes[..cut];
        let result = Frame::decode(short).and_then(|f| f.body::<Sample>());
        match result {
            Err(DecodeError::Truncated) => assert!(cut < HEADER_LEN),
            Err(DecodeError::BodyTruncated) => assert!(cut >= HEADER_LEN),
            other => panic!("truncation at {cut} gave {other:?}"),
        }
    }
}

#[test]
fn wrong_version_and_kind_are_named() {
    let mut buf = [0u8; 64];
    let mut bytes = frame::encode(&Header::notify(Sample::KEY), &sample(), &mut buf)
        .unwrap()
        .to_vec();
    bytes[1] = 9;
    assert_eq!(Frame::decode(&bytes), Err(DecodeError::UnknownKind(9)));
    bytes[0] = 2;
    assert_eq!(Frame::decode(&bytes), Err(DecodeError::UnknownVersion(2)));
    assert_eq!(Frame::decode(&[2]), Err(DecodeError::UnknownVersion(2)));
    assert_eq!(Frame::decode(&[]), Err(DecodeError::Truncated));
}

#[test]
fn body_of_the_wrong_type_or_with_trailing_bytes_is_refused() {
    let mut buf = [0u8; 64];
    let header = Header::request(1, Sample::KEY);
    // A bool body read as a Sample: too short.
    let bytes = frame::encode(&header, &true, &mut buf).unwrap().to_vec();
    assert!(Frame::decode(&bytes).unwrap().body::<Sample>().is_err());
    // A u32 followed by extra bytes.
    let bytes = frame::encode(&header, &(7u32, 8u32), &mut buf)
        .unwrap()
        .to_vec();
    assert_eq!(
        Frame::decode(&bytes).unwrap().body::<u32>(),
        Err(DecodeError::TrailingBytes(1))
    );
    // 0xFF is not a valid bool.
    let mut bytes = frame::encode(&header, &true, &mut buf).unwrap().to_vec();
    *bytes.last_mut().unwrap() = 0xFF;
    assert_eq!(
        Frame::decode(&bytes).unwrap().body::<bool>(),
        Err(DecodeError::BadBody)
    );
    // An error message longer than RemoteError allows does not decode as one.
    let long = "x".repeat(200);
    let bytes = frame::encode(&header.error(), &(4u16, long.as_str()), &mut [0u8; 256])
        .unwrap()
        .to_vec();
    assert!(Frame::decode(&bytes).unwrap().remote_error().is_err());
}

#[test]
fn buffer_too_small_is_an_error_at_every_size() {
    let header = Header::request(1, Sample::KEY);
    let mut big = [0u8; 128];
    let full_len = frame::encode(&header, &sample(), &mut big).unwrap().len();
    for size in 0..full_len {
        let mut buf = vec![0u8; size];
        assert_eq!(
            frame::encode(&header, &sample(), &mut buf),
            Err(EncodeError::BufferTooSmall),
            "size {size}"
        );
    }
}

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_bytes_never_panic_and_mostly_fail() {
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for round in 0..20_000 {
        let len = (noise.next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
        if round % 2 == 0 && !bytes.is_empty() {
            bytes[0] = VERSION; // exercise the kind and body paths too
        }
        if let Ok(f) = Frame::decode(&bytes) {
            let typed = f.body::<Sample>().is_ok() as u32
                + f.body::<u32>().is_ok() as u32
                + f.remote_error().is_ok() as u32;
            accepted += typed;
        }
    }
    // Random data rarely forms a valid Sample; the loop's real check is "no panic".
    assert!(accepted < 20_000, "accepted {accepted}");
}

#[test]
fn decode_errors_say_what_is_wrong() {
    assert_eq!(
        DecodeError::UnknownVersion(7).to_string(),
        "unknown protocol version 7 (this end speaks 1)"
    );
    assert_eq!(
        RemoteError::new(ErrorCode::UnknownCommand, "key 00ff").to_string(),
        "unknown command: key 00ff"
    );
}

#[test]
fn a_server_serves_requests_and_notifications_only() {
    assert!(Kind::Request.is_request() && Kind::Notify.is_request());
    for kind in [Kind::Reply, Kind::Error, Kind::Heartbeat, Kind::Accepted] {
        assert!(!kind.is_request(), "{kind:?}");
    }
    for kind in [Kind::Reply, Kind::Error, Kind::Accepted] {
        assert!(kind.is_answer(), "{kind:?}");
    }
    for kind in [Kind::Request, Kind::Notify, Kind::Heartbeat] {
        assert!(!kind.is_answer(), "{kind:?}");
    }
}

#[test]
fn an_acceptance_answers_its_request_and_holds_no_response() {
    let request = Header::request(41, Key::of("sensor.temperature"));
    let mut buf = [0u8; 32];
    let accepted = frame::encode(&request.accepted(), &(), &mut buf).unwrap();
    assert_eq!(accepted.len(), HEADER_LEN);
    assert_eq!(accepted[1], 5, "the wire byte of an acceptance");
    let frame = Frame::decode(accepted).unwrap();
    assert!(request.takes_answer(&frame.header));
    assert_eq!(frame.outcome::<f32>(), Err(DecodeError::Accepted));
    assert_eq!(frame.outcome::<()>(), Err(DecodeError::Accepted));
}

#[test]
fn a_request_takes_its_own_answers_and_the_unaddressed_error_only() {
    let request = Header::request(41, Key::of("test.add"));
    assert!(request.takes_answer(&request.reply()));
    assert!(request.takes_answer(&request.error()));
    // The unaddressed error: the answer to a request that could not be read.
    let unaddressed = Header::UNREADABLE.error();
    assert!(unaddressed.is_unaddressed_error());
    assert!(request.takes_answer(&unaddressed));
    // But never an unaddressed value, another call's answer, or a request.
    assert!(!request.takes_answer(&Header::UNREADABLE.reply()));
    assert!(!request.takes_answer(&Header::request(42, request.key).reply()));
    assert!(!request.takes_answer(&Header::request(41, Key::of("other")).error()));
    assert!(!request.takes_answer(&request));
    assert!(!request.error().is_unaddressed_error());
}

#[test]
fn an_answer_says_its_response_or_its_remote_error() {
    let request = Header::request(3, Key::of("test.echo"));
    let mut buf = [0u8; 128];
    let reply = frame::encode(&request.reply(), "pong", &mut buf).unwrap();
    assert_eq!(
        Frame::decode(reply).unwrap().outcome::<&str>(),
        Ok(Ok("pong"))
    );
    let refusal = RemoteError::new(ErrorCode::ServiceFailed, "no");
    let error = frame::encode(&request.error(), &refusal, &mut buf).unwrap();
    assert_eq!(
        Frame::decode(error).unwrap().outcome::<&str>(),
        Ok(Err(refusal))
    );
    // A reply whose body is not the response type, and a frame that is no answer.
    let wrong = frame::encode(&request.reply(), &7u8, &mut buf).unwrap();
    assert!(Frame::decode(wrong).unwrap().outcome::<&str>().is_err());
    let not_an_answer = frame::encode(&request, "ping", &mut buf).unwrap();
    assert_eq!(
        Frame::decode(not_an_answer).unwrap().outcome::<&str>(),
        Err(DecodeError::NotAnAnswer(Kind::Request))
    );
}

#[test]
fn only_passing_refusals_are_worth_sending_again() {
    for code in [ErrorCode::Busy, ErrorCode::Timeout, ErrorCode::Unavailable] {
        assert!(code.is_transient(), "{code:?}");
    }
    for code in [
        ErrorCode::UnknownCommand,
        ErrorCode::BadFrame,
        ErrorCode::VersionMismatch,
        ErrorCode::ServiceFailed,
        ErrorCode::TooLarge,
        ErrorCode::Other(999),
    ] {
        assert!(!code.is_transient(), "{code:?}");
    }
}
