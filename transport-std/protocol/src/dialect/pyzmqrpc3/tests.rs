//! The dialect against bytes pyzmqrpc3 3.2.2 made itself, and its answers.
#![allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report

use super::*;
use crate::dialect::{interpret, Interpretation};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SetLed {
    on: bool,
    level: u8,
}
impl Command for SetLed {
    const NAME: &'static str = "SetLed";
    type Response = String;
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Ping;
impl Command for Ping {
    const NAME: &'static str = "Ping";
    type Response = ();
}

/// What pyzmqrpc3 3.2.2's `json_zip` makes of `SetLed(on=True, level=7)` and `Ping()`.
const PY_SET_LED: &[u8] =
    b"eJyrVorPTM5NiVeyUohWCk4t8UlNUdJRqFbKzwOKlBSVpuooKOWklqXmALnmtbG1AGx+Duc=";
const PY_PING: &[u8] = b"eJyrVorPTM5NiVeyUohWCsjMS1fSUaiuja0FAF/sB8A=";

#[test]
fn a_python_command_is_read_by_its_class_name_and_state() {
    let mut scratch = Vec::new();
    let dialect = Pyzmqrpc3::new();
    let request = dialect
        .read_request(PY_SET_LED, &mut scratch, 1 << 20)
        .unwrap();
    assert_eq!(request.key, SetLed::KEY);
    let command: SetLed = dialect.decode_command(&request).unwrap();
    assert_eq!(command, SetLed { on: true, level: 7 });
    let request = dialect
        .read_request(PY_PING, &mut scratch, 1 << 20)
        .unwrap();
    assert_eq!(request.key, Ping::KEY);
    assert_eq!(dialect.decode_command::<Ping>(&request), Ok(Ping));
}

#[test]
fn a_rust_command_reads_back_the_same_and_a_class_name_can_differ_from_the_name() {
    let dialect = Pyzmqrpc3::new().class::<SetLed>("LedCommand");
    let mut out = Vec::new();
    dialect
        .encode_call(
            1,
            &SetLed {
                on: false,
                level: 3,
            },
            &mut out,
            1 << 20,
        )
        .unwrap();
    assert!(out.starts_with(b"eJ"), "zlib, base64: {out:?}");
    let mut scratch = Vec::new();
    let request = dialect.read_request(&out, &mut scratch, 1 << 20).unwrap();
    assert_eq!(request.key, SetLed::KEY);
    let json = miniz_oxide::inflate::decompress_to_vec_zlib(
        &base64::engine::general_purpose::STANDARD
            .decode(&out)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        std::str::from_utf8(&json).unwrap(),
        r#"{"_icmd_":["LedCommand",{"on":false,"level":3}]}"#
    );
    // Under its own name the class is unknown to this dialect's map: another key.
    let plain = Pyzmqrpc3::new();
    let request = plain.read_request(&out, &mut scratch, 1 << 20).unwrap();
    assert_eq!(request.key, Key::of("LedCommand"));
    // A command without fields travels as an empty state.
    plain.encode_notify(&Ping, &mut out, 1 << 20).unwrap();
    let request = plain.read_request(&out, &mut scratch, 1 << 20).unwrap();
    assert_eq!(request.body, b"{}");
}

#[test]
fn answers_are_the_peers_status_json() {
    let dialect = Pyzmqrpc3::new();
    let mut out = Vec::new();
    dialect.encode_response(&(), "lit", &mut out, 1024).unwrap();
    assert_eq!(
        out,
        br#"{"status_code":200,"status_message":"OK","response_message":"lit"}"#
    );
    dialect.encode_response(&(), &(), &mut out, 1024).unwrap();
    assert_eq!(out, br#"{"status_code":200,"status_message":"OK"}"#);
    dialect.encode_error(&(), ErrorCode::UnknownCommand, "no service", &mut out);
    assert_eq!(out, br#"{"status_code":451,"status_message":"no service"}"#);
    for (code, status) in [
        (ErrorCode::BadFrame, 400),
        (ErrorCode::ServiceFailed, 463),
        (ErrorCode::Unavailable, 482),
        (ErrorCode::Timeout, 482),
    ] {
        assert_eq!(status_code(code), status);
    }
    let call = CallTag {
        seq: 1,
        key: SetLed::KEY,
    };
    let python_ok = br#"{"status_code": 200, "status_message": "OK", "response_message": "lit"}"#;
    assert_eq!(
        interpret::<_, String>(&dialect, &call, python_ok),
        Interpretation::Answer(Ok("lit".to_owned()))
    );
    let python_nothing = br#"{"status_code": 200, "status_message": "OK"}"#;
    assert_eq!(
        interpret::<_, ()>(&dialect, &call, python_nothing),
        Interpretation::Answer(Ok(()))
    );
    // A buffered proxy's acceptance: neither `None` nor a failure to a zmqrpc caller.
    let mut accepted = Vec::new();
    dialect.encode_accepted(&(), &mut accepted);
    assert_eq!(
        interpret::<_, String>(&dialect, &call, &accepted),
        Interpretation::Accepted
    );
    assert_eq!(
        interpret::<_, ()>(&dialect, &call, &accepted),
        Interpretation::Accepted
    );
    let python_raised =
        br#"{"status_code": 463, "status_message": "Exception raised when calling service"}"#;
    match interpret::<_, String>(&dialect, &call, python_raised) {
        Interpretation::Answer(Err(e)) => {
            assert_eq!(e.code, ErrorCode::ServiceFailed);
            assert!(e.message.starts_with("Exception raised"));
        }
        other => panic!("{other:?}"),
    }
    match interpret::<_, String>(&dialect, &call, br#"{"status_code": 499}"#) {
        Interpretation::Answer(Err(e)) => assert_eq!(e.code, ErrorCode::Other(499)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        interpret::<_, String>(&dialect, &call, b"not json"),
        Interpretation::Unreadable(_)
    ));
}

#[test]
fn garbage_is_refused_with_a_400_and_the_heartbeat_answered() {
    let dialect = Pyzmqrpc3::new();
    let mut scratch = Vec::new();
    for garbage in [
        &b"!!not base64"[..],
        b"aGVsbG8=",
        b"eJyrVorPTM5NiVeyUohWCg==",
    ] {
        let refusal = dialect
            .read_request(garbage, &mut scratch, 1 << 20)
            .unwrap_err();
        assert_eq!(refusal.code, ErrorCode::BadFrame);
        let mut out = Vec::new();
        refusal.answer(&dialect, &mut out);
        assert!(out.starts_with(br#"{"status_code":400,"#), "{out:?}");
    }
    assert_eq!(
        Pyzmqrpc3::heartbeat_answer(PYZMQRPC3_HEARTBEAT),
        Some(OK_ANSWER)
    );
    assert_eq!(Pyzmqrpc3::heartbeat_answer(PY_PING), None);
}

/// A pyzmqrpc3 message of `json`, as a peer would send it.
fn message_of(json: &[u8]) -> Vec<u8> {
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(json, 9);
    base64::engine::general_purpose::STANDARD
        .encode(compressed)
        .into_bytes()
}

/// `{"_icmd_": ["echo", {"text": "hi"}], "pad": "000…"}`: a small command beside `pad`
/// bytes of padding.
fn padded(pad: usize) -> Vec<u8> {
    let mut json = br#"{"_icmd_": ["echo", {"text": "hi"}], "pad": ""#.to_vec();
    json.resize(json.len() + pad, b'0');
    json.extend_from_slice(br#""}"#);
    json
}

#[test]
fn a_compressed_bomb_is_refused_as_too_large_having_inflated_no_more_than_max_body() {
    // 16 MiB of padding compresses about 1000:1.
    let bomb = message_of(&padded(16 << 20));
    assert!(bomb.len() < 32 << 10, "{} bytes", bomb.len());
    let max_body = 256 << 10;
    let mut scratch = Vec::new();
    let refusal = Pyzmqrpc3::new()
        .read_request(&bomb, &mut scratch, max_body)
        .unwrap_err();
    assert_eq!(refusal.code, ErrorCode::TooLarge, "{}", refusal.message);
    assert!(refusal.is_too_large());
    assert!(refusal.message.contains("max_body"), "{}", refusal.message);
    assert!(scratch.capacity() <= max_body, "{}", scratch.capacity());
    let mut out = Vec::new();
    refusal.answer(&Pyzmqrpc3::new(), &mut out);
    assert!(out.starts_with(br#"{"status_code":400,"#), "{out:?}");
}

#[test]
fn max_body_bounds_the_whole_command_not_only_its_state() {
    let dialect = Pyzmqrpc3::new();
    let mut scratch = Vec::new();
    // The state is tiny; the padding beside it makes the command 300 KB.
    let padded = message_of(&padded(300 << 10));
    let refusal = dialect
        .read_request(&padded, &mut scratch, 256 << 10)
        .unwrap_err();
    assert_eq!(refusal.code, ErrorCode::TooLarge);
    // Within the limit, the same message is read, and the state is the command's.
    let request = dialect
        .read_request(&padded, &mut scratch, 400 << 10)
        .unwrap();
    assert_eq!(request.body, br#"{"text": "hi"}"#);
    // The limit is inclusive: a command of exactly max_body bytes is read.
    let exact = self::padded(1000);
    let message = message_of(&exact);
    assert!(dialect
        .read_request(&message, &mut scratch, exact.len())
        .is_ok());
    let refusal = dialect
        .read_request(&message, &mut scratch, exact.len() - 1)
        .unwrap_err();
    assert_eq!(refusal.code, ErrorCode::TooLarge);
}
