//! Encoding frames into reusable `Vec`s: the core encodes into slices, this grows the slice.

use serde::Serialize;
use zmqrpc_core::{frame, DecodeError, EncodeError, ErrorCode, Header, RemoteError};

/// Encodes `header` and `body` into `out` (replacing its contents), growing it up to `max`
/// bytes. Allocation-free once `out` has grown to the largest frame seen.
pub(crate) fn encode_to_vec<T: Serialize + ?Sized>(
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

/// Encodes an error answer to `request` into `out`. Never fails: an error message always fits.
pub(crate) fn encode_error(request: &Header, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    let error = RemoteError::new(code, message);
    // An error frame is at most a few hundred bytes, so only a broken serializer fails here;
    // the reply is then empty, which a client reports as a bad frame.
    let _ = encode_to_vec(&request.error(), &error, out, 1024);
}

/// The largest frame a socket option set allows, for encoding limits.
pub(crate) fn max_frame(max_message_size: Option<u64>) -> usize {
    max_message_size
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(64 << 20)
}

/// Why a message is not a request a server or proxy takes, and the error answer it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The header to answer: the message's own, or [`Header::UNREADABLE`]'s.
    pub(crate) header: Header,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl Refusal {
    /// Writes the error answer into `out`.
    pub(crate) fn answer(&self, out: &mut Vec<u8>) {
        encode_error(&self.header, self.code, &self.message, out);
    }
}

/// The header of `bytes` if they start a request (or notification) frame; otherwise what is
/// wrong with them, as the answer to send. What a server, a proxy and a buffered proxy take
/// in, alike.
pub(crate) fn read_request(bytes: &[u8]) -> Result<Header, Refusal> {
    match Header::read(bytes) {
        Ok(header) if header.kind.is_request() => Ok(header),
        Ok(header) => Err(Refusal {
            header,
            code: ErrorCode::BadFrame,
            message: format!("a {:?} frame is not a request", header.kind),
        }),
        Err(error) => Err(Refusal {
            header: Header::UNREADABLE,
            code: match error {
                DecodeError::UnknownVersion(_) => ErrorCode::VersionMismatch,
                _ => ErrorCode::BadFrame,
            },
            message: error.to_string(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;
    use zmqrpc_core::{frame, Key};

    #[test]
    fn requests_and_notifications_are_taken() {
        let mut buf = [0u8; 64];
        for header in [
            Header::request(9, Key::of("a")),
            Header::notify(Key::of("b")),
        ] {
            let bytes = frame::encode(&header, &1u8, &mut buf).unwrap();
            assert_eq!(read_request(bytes), Ok(header));
        }
    }

    #[test]
    fn answers_are_refused_by_their_own_header_and_garbage_unaddressed() {
        let mut buf = [0u8; 64];
        let request = Header::request(9, Key::of("a"));
        let reply = frame::encode(&request.reply(), &1u8, &mut buf).unwrap();
        let refusal = read_request(reply).unwrap_err();
        assert_eq!(
            (refusal.header, refusal.code),
            (request.reply(), ErrorCode::BadFrame)
        );
        let refusal = read_request(b"\x01\x00short").unwrap_err();
        assert_eq!(
            (refusal.header, refusal.code),
            (Header::UNREADABLE, ErrorCode::BadFrame)
        );
        let refusal = read_request(b"\x09 a later version!").unwrap_err();
        assert_eq!(refusal.code, ErrorCode::VersionMismatch);
        // The answer a caller gets is the unaddressed error, which it takes.
        let mut out = Vec::new();
        refusal.answer(&mut out);
        let answer = zmqrpc_core::Frame::decode(&out).unwrap();
        assert!(answer.header.is_unaddressed_error());
    }
}
