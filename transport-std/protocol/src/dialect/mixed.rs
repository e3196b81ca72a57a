//! [`Mixed`]: the native dialect and pyzmqrpc3's on one socket, each message answered in
//! the dialect it came in.
//!
//! Everything pyzmqrpc3 sends is text (base64 commands, JSON answers, the heartbeat word);
//! a native frame starts with its version byte, 1, which no text does. So a message of
//! text without control characters is taken as pyzmqrpc3's (and answered in its JSON,
//! even if it is no command), anything else as native (and answered with a native error
//! frame if it is no frame): a server (or proxy) speaking `Mixed` serves Rust and Python
//! callers on one endpoint with the same registered services. As a caller, `Mixed`
//! speaks native.

use serde::de::DeserializeOwned;
use serde::Serialize;
use zmqrpc_core::{Command, DecodeError, EncodeError, ErrorCode, Header};

use super::{AnswerView, CallTag, Dialect, Native, Pyzmqrpc3, Refusal, Request};

/// Native frames and pyzmqrpc3 messages on one socket; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Mixed {
    pyzmqrpc3: Pyzmqrpc3,
}

/// Which dialect a request came in, and what its answer is addressed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixedHead {
    /// A native frame's header.
    Native(Header),
    /// A pyzmqrpc3 command (its answers carry no address).
    Pyzmqrpc3,
}

impl Mixed {
    /// Both dialects, pyzmqrpc3's class names as `pyzmqrpc3` has them.
    pub fn new(pyzmqrpc3: Pyzmqrpc3) -> Mixed {
        Mixed { pyzmqrpc3 }
    }

    /// The pyzmqrpc3 side (its class names).
    pub fn pyzmqrpc3(&self) -> &Pyzmqrpc3 {
        &self.pyzmqrpc3
    }
}

/// Whether `bytes` are native: not pyzmqrpc3's text. A native frame's first byte (the
/// version, 1) settles it at once.
fn is_native(bytes: &[u8]) -> bool {
    let text_char = |c: char| !c.is_control() || matches!(c, '\n' | '\r' | '\t');
    match bytes.first() {
        None => true,
        Some(&first) if first < 0x20 && !first.is_ascii_whitespace() => true,
        Some(_) => !std::str::from_utf8(bytes).is_ok_and(|text| text.chars().all(text_char)),
    }
}

fn lift<'a, H>(
    read: Result<Request<'a, H>, Refusal<H>>,
    head: impl Fn(H) -> MixedHead,
) -> Result<Request<'a, MixedHead>, Refusal<MixedHead>> {
    match read {
        Ok(request) => Ok(Request {
            head: head(request.head),
            key: request.key,
            seq: request.seq,
            body: request.body,
        }),
        Err(refusal) => Err(Refusal {
            head: head(refusal.head),
            code: refusal.code,
            message: refusal.message,
        }),
    }
}

fn part<'a, H>(request: &Request<'a, MixedHead>, head: H) -> Request<'a, H> {
    Request {
        head,
        key: request.key,
        seq: request.seq,
        body: request.body,
    }
}

impl Dialect for Mixed {
    type Head = MixedHead;

    const HEARTBEAT: &'static [u8] = Native::HEARTBEAT;

    fn heartbeat_answer(message: &[u8]) -> Option<&'static [u8]> {
        Native::heartbeat_answer(message).or_else(|| Pyzmqrpc3::heartbeat_answer(message))
    }

    fn read_request<'a>(
        &self,
        bytes: &'a [u8],
        scratch: &'a mut Vec<u8>,
        max_body: usize,
    ) -> Result<Request<'a, MixedHead>, Refusal<MixedHead>> {
        if is_native(bytes) {
            lift(
                Native.read_request(bytes, scratch, max_body),
                MixedHead::Native,
            )
        } else {
            lift(
                self.pyzmqrpc3.read_request(bytes, scratch, max_body),
                |()| MixedHead::Pyzmqrpc3,
            )
        }
    }

    fn decode_command<C: Command>(
        &self,
        request: &Request<'_, MixedHead>,
    ) -> Result<C, DecodeError> {
        match request.head {
            MixedHead::Native(header) => Native.decode_command(&part(request, header)),
            MixedHead::Pyzmqrpc3 => self.pyzmqrpc3.decode_command(&part(request, ())),
        }
    }

    fn encode_response<R: Serialize + ?Sized>(
        &self,
        head: &MixedHead,
        response: &R,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        match head {
            MixedHead::Native(header) => Native.encode_response(header, response, out, max),
            MixedHead::Pyzmqrpc3 => self.pyzmqrpc3.encode_response(&(), response, out, max),
        }
    }

    fn encode_error(&self, head: &MixedHead, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
        match head {
            MixedHead::Native(header) => Native.encode_error(header, code, message, out),
            MixedHead::Pyzmqrpc3 => self.pyzmqrpc3.encode_error(&(), code, message, out),
        }
    }

    fn encode_accepted(&self, head: &MixedHead, out: &mut Vec<u8>) {
        match head {
            MixedHead::Native(header) => Native.encode_accepted(header, out),
            MixedHead::Pyzmqrpc3 => self.pyzmqrpc3.encode_accepted(&(), out),
        }
    }

    fn unreadable(&self) -> MixedHead {
        MixedHead::Native(Native.unreadable())
    }

    fn encode_call<C: Command>(
        &self,
        seq: u32,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<CallTag, EncodeError> {
        Native.encode_call(seq, command, out, max)
    }

    fn encode_notify<C: Command>(
        &self,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        Native.encode_notify(command, out, max)
    }

    fn read_answer<'a>(&self, bytes: &'a [u8]) -> Result<AnswerView<'a>, DecodeError> {
        if is_native(bytes) {
            Native.read_answer(bytes)
        } else {
            self.pyzmqrpc3.read_answer(bytes)
        }
    }

    fn decode_response<R: DeserializeOwned>(&self, body: &[u8]) -> Result<R, DecodeError> {
        // As a caller `Mixed` speaks native, so the answers whose values it decodes are too.
        Native.decode_response(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_pyzmqrpc3s_and_everything_else_native() {
        for native in [
            &b""[..],
            b"\x01\x00 a frame",
            b"\xde\xad\xbe\xef",
            b"text with a \x07 bell",
        ] {
            assert!(is_native(native), "{native:?}");
        }
        for text in [
            &b"eJyrVorPTM5NiVeyUohWCsjMS1fSUaiuja0FAF/sB8A="[..],
            b"{\"status_code\": 200}\n",
            b"garbage",
            "d\u{e9}j\u{e0} vu".as_bytes(),
        ] {
            assert!(!is_native(text), "{text:?}");
        }
    }
}
