//! [`Native`]: the core's frame, a 14-byte header and a postcard body.
//!
//! The core owns the bytes and their meaning ([`Header`], [`Frame`], [`Kind::is_request`],
//! [`Header::UNREADABLE`], [`frame::is_heartbeat`]); this file only grows the core's
//! slice encoding into reusable `Vec`s and maps a frame to the seam's types.

use serde::de::DeserializeOwned;
use serde::Serialize;
use zmqrpc_core::{
    frame, Command, DecodeError, EncodeError, ErrorCode, Frame, Header, Kind, RemoteError,
    HEADER_LEN,
};

use super::{Addressee, AnswerView, CallTag, Dialect, Refusal, Request, Says};

/// The native wire format: one [`Frame`] per message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Native;

/// What a request refused for its size is told.
pub(super) fn too_large(len: usize, max_body: usize) -> String {
    format!("a command of {len} bytes exceeds the limit of {max_body} bytes (max_body)")
}

/// The largest error answer: a header and a [`RemoteError`] with its longest message.
const MAX_ERROR_FRAME: usize = 1024;

impl Dialect for Native {
    type Head = Header;

    const HEARTBEAT: &'static [u8] = &frame::HEARTBEAT;

    fn heartbeat_answer(message: &[u8]) -> Option<&'static [u8]> {
        frame::is_heartbeat(message).then_some(&frame::HEARTBEAT[..])
    }

    fn read_request<'a>(
        &self,
        bytes: &'a [u8],
        _scratch: &'a mut Vec<u8>,
        max_body: usize,
    ) -> Result<Request<'a, Header>, Refusal<Header>> {
        match Header::read(bytes) {
            Ok(header) if header.kind.is_request() => {
                let body = bytes.get(HEADER_LEN..).unwrap_or_default();
                if body.len() > max_body {
                    return Err(Refusal {
                        head: header,
                        code: ErrorCode::TooLarge,
                        message: too_large(body.len(), max_body),
                    });
                }
                Ok(Request {
                    head: header,
                    key: header.key,
                    seq: header.seq,
                    body,
                })
            }
            Ok(header) => Err(Refusal {
                head: header,
                code: ErrorCode::BadFrame,
                message: format!("a {:?} frame is not a request", header.kind),
            }),
            Err(error) => Err(Refusal {
                head: Header::UNREADABLE,
                code: match error {
                    DecodeError::UnknownVersion(_) => ErrorCode::VersionMismatch,
                    _ => ErrorCode::BadFrame,
                },
                message: error.to_string(),
            }),
        }
    }

    fn decode_command<C: Command>(&self, request: &Request<'_, Header>) -> Result<C, DecodeError> {
        frame::decode_body(request.body)
    }

    fn encode_response<R: Serialize + ?Sized>(
        &self,
        head: &Header,
        response: &R,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        encode_to_vec(&head.reply(), response, out, max)
    }

    fn encode_error(&self, head: &Header, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
        let error = RemoteError::new(code, message);
        // An error frame is at most a few hundred bytes, so only a broken serializer fails
        // here; the answer is then empty, which a client reports as a bad frame.
        let _ = encode_to_vec(&head.error(), &error, out, MAX_ERROR_FRAME);
    }

    fn encode_accepted(&self, head: &Header, out: &mut Vec<u8>) {
        // `()` encodes to nothing: the header alone, which always fits.
        let _ = encode_to_vec(&head.accepted(), &(), out, HEADER_LEN);
    }

    fn unreadable(&self) -> Header {
        Header::UNREADABLE
    }

    fn encode_call<C: Command>(
        &self,
        seq: u32,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<CallTag, EncodeError> {
        encode_to_vec(&Header::request(seq, C::KEY), command, out, max)?;
        Ok(CallTag { seq, key: C::KEY })
    }

    fn encode_notify<C: Command>(
        &self,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        encode_to_vec(&Header::notify(C::KEY), command, out, max)
    }

    fn read_answer<'a>(&self, bytes: &'a [u8]) -> Result<AnswerView<'a>, DecodeError> {
        let frame = Frame::decode(bytes)?;
        let header = frame.header;
        if !header.kind.is_answer() {
            return Err(DecodeError::NotAnAnswer(header.kind));
        }
        let to = if header.is_unaddressed_error() {
            Addressee::Anyone
        } else {
            Addressee::Call(CallTag {
                seq: header.seq,
                key: header.key,
            })
        };
        let says = match header.kind {
            // A reply's value is decoded by whoever knows its type.
            Kind::Reply => Says::Response(frame.body),
            Kind::Accepted => Says::Accepted,
            _ => Says::Error(frame.remote_error()?),
        };
        Ok(AnswerView { to, says })
    }

    fn decode_response<R: DeserializeOwned>(&self, body: &[u8]) -> Result<R, DecodeError> {
        frame::decode_body(body)
    }
}

impl Native {
    /// A frame of `header` and a body already encoded, in `out`: how a relay passes a frame
    /// on under a header of its own (the serial bridge's link sequence numbers), the body
    /// untouched.
    pub fn relabelled(&self, header: &Header, body: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.resize(HEADER_LEN, 0);
        // The buffer has the header's room: writing it cannot fail.
        let _ = header.write(out);
        out.extend_from_slice(body);
    }

    /// The largest body a frame of `frame_len` bytes has room for.
    pub const fn body_room(frame_len: usize) -> usize {
        frame_len.saturating_sub(HEADER_LEN)
    }

    /// The smallest frame: a header alone.
    pub const MIN_FRAME: usize = HEADER_LEN;
}

/// Encodes `header` and `body` into `out` (replacing its contents), growing it up to `max`
/// bytes. Allocation-free once `out` has grown to the largest frame seen.
fn encode_to_vec<T: Serialize + ?Sized>(
    header: &Header,
    body: &T,
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), EncodeError> {
    let mut size = out.capacity().clamp(64, max.max(64));
    loop {
        out.resize(size, 0);
        match frame::encode(header, body, out) {
            Ok(bytes) => {
                let len = bytes.len();
                out.truncate(len);
                return Ok(());
            }
            Err(EncodeError::BufferTooSmall) if size < max => size = (size * 2).min(max),
            Err(e) => {
                out.clear();
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;
    use crate::dialect::{interpret, Interpretation};
    use serde::Deserialize;
    use zmqrpc_core::Key;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Add(i32, i32);
    impl Command for Add {
        const NAME: &'static str = "add";
        type Response = i32;
    }

    fn read(bytes: &[u8]) -> Result<Request<'_, Header>, Refusal<Header>> {
        // The native dialect never lends from scratch, so a throwaway one will do.
        let scratch: &mut Vec<u8> = Box::leak(Box::default());
        Native.read_request(bytes, scratch, usize::MAX)
    }

    #[test]
    fn requests_and_notifications_are_taken_with_their_key_and_number() {
        let mut out = Vec::new();
        Native.encode_call(9, &Add(1, 2), &mut out, 1024).unwrap();
        let request = read(&out).unwrap();
        assert_eq!(
            (request.head, request.key, request.seq),
            (Header::request(9, Add::KEY), Add::KEY, 9)
        );
        assert_eq!(Native.decode_command::<Add>(&request), Ok(Add(1, 2)));
        Native.encode_notify(&Add(3, 4), &mut out, 1024).unwrap();
        let request = read(&out).unwrap();
        assert_eq!((request.head, request.seq), (Header::notify(Add::KEY), 0));
    }

    #[test]
    fn answers_are_refused_by_their_own_header_and_garbage_unaddressed() {
        let request = Header::request(9, Key::of("a"));
        let mut reply = Vec::new();
        Native
            .encode_response(&request, &1u8, &mut reply, 1024)
            .unwrap();
        let refusal = read(&reply).unwrap_err();
        assert_eq!(
            (refusal.head, refusal.code),
            (request.reply(), ErrorCode::BadFrame)
        );
        let refusal = read(b"\x01\x00short").unwrap_err();
        assert_eq!(
            (refusal.head, refusal.code),
            (Header::UNREADABLE, ErrorCode::BadFrame)
        );
        let refusal = read(b"\x09 a later version!").unwrap_err();
        assert_eq!(refusal.code, ErrorCode::VersionMismatch);
        // The answer a caller gets is the unaddressed error, which any call takes.
        let mut out = Vec::new();
        refusal.answer(&Native, &mut out);
        let answer = Native.read_answer(&out).unwrap();
        assert_eq!(answer.to, Addressee::Anyone);
        let call = CallTag {
            seq: 77,
            key: Add::KEY,
        };
        match interpret::<_, i32>(&Native, &call, &out) {
            Interpretation::Answer(Err(e)) => assert_eq!(e.code, ErrorCode::VersionMismatch),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_answer_is_the_calls_own_a_stray_or_unreadable() {
        let (mut call, mut answer) = (Vec::new(), Vec::new());
        let tag = Native.encode_call(5, &Add(2, 3), &mut call, 1024).unwrap();
        let head = read(&call).unwrap().head;
        Native
            .encode_response(&head, &5i32, &mut answer, 1024)
            .unwrap();
        assert_eq!(
            interpret::<_, i32>(&Native, &tag, &answer),
            Interpretation::Answer(Ok(5))
        );
        // Another call's number, or another command's key: a stray.
        for other in [
            CallTag { seq: 6, ..tag },
            CallTag {
                key: Key::of("sub"),
                ..tag
            },
        ] {
            assert_eq!(
                interpret::<_, i32>(&Native, &other, &answer),
                Interpretation::Stray
            );
        }
        // An error answer is the call's result, not a decoding failure.
        Native.encode_error(&head, ErrorCode::ServiceFailed, "no", &mut answer);
        match interpret::<_, i32>(&Native, &tag, &answer) {
            Interpretation::Answer(Err(e)) => {
                assert_eq!(
                    (e.code, e.message.as_str()),
                    (ErrorCode::ServiceFailed, "no")
                )
            }
            other => panic!("{other:?}"),
        }
        // A value of the wrong type, a request instead of an answer, garbage: unreadable.
        Native
            .encode_response(&head, "five", &mut answer, 1024)
            .unwrap();
        assert!(matches!(
            interpret::<_, i32>(&Native, &tag, &answer),
            Interpretation::Unreadable(_)
        ));
        assert_eq!(
            interpret::<_, i32>(&Native, &tag, &call),
            Interpretation::Unreadable(DecodeError::NotAnAnswer(Kind::Request))
        );
        assert_eq!(
            interpret::<_, i32>(&Native, &tag, b"\x01"),
            Interpretation::Unreadable(DecodeError::Truncated)
        );
    }

    #[test]
    fn an_acceptance_is_no_response_and_a_heartbeat_is_echoed() {
        let head = Header::request(3, Add::KEY);
        let mut out = Vec::new();
        Native.encode_accepted(&head, &mut out);
        let tag = CallTag {
            seq: 3,
            key: Add::KEY,
        };
        // Neither a value nobody sent nor a decoding failure: an acceptance.
        assert_eq!(
            interpret::<_, i32>(&Native, &tag, &out),
            Interpretation::Accepted
        );
        assert_eq!(
            interpret::<_, ()>(&Native, &tag, &out),
            Interpretation::Accepted
        );
        assert_eq!(
            Native::heartbeat_answer(Native::HEARTBEAT),
            Some(Native::HEARTBEAT)
        );
        assert_eq!(Native::heartbeat_answer(&out), None);
    }

    #[test]
    fn encoding_grows_the_buffer_up_to_the_limit_and_no_further() {
        let mut out = Vec::new();
        let big = vec![7u8; 10_000];
        let head = Header::request(1, Key::of("blob"));
        Native
            .encode_response(&head, &big, &mut out, 20_000)
            .unwrap();
        assert!(out.len() > 10_000);
        assert_eq!(
            Native.encode_response(&head, &big, &mut out, 5_000),
            Err(EncodeError::BufferTooSmall)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_body_over_max_body_is_refused_as_too_large_by_its_own_header() {
        let (mut call, mut scratch) = (Vec::new(), Vec::new());
        Native.encode_call(9, &Add(1, 2), &mut call, 64).unwrap();
        let body = call.len() - HEADER_LEN;
        assert!(Native.read_request(&call, &mut scratch, body).is_ok());
        let refusal = Native
            .read_request(&call, &mut scratch, body - 1)
            .unwrap_err();
        assert!(refusal.is_too_large());
        assert_eq!(refusal.head.seq, 9);
        assert_eq!(refusal.head.key, Add::KEY);
        assert!(refusal.message.contains("max_body"), "{}", refusal.message);
    }
}
