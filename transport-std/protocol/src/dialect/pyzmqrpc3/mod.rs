//! [`Pyzmqrpc3`]: the wire format of the Python package pyzmqrpc3 (3.2.2), so Rust and
//! Python peers call each other and share proxies.
//!
//! - A command (over REQ and PUB alike) is one message part: ASCII base64 (standard
//!   alphabet, padded) of zlib of UTF-8 JSON `{"_icmd_": ["<ClassName>", {<state>}]}`. The
//!   class name is the command's identity; its state is the command's serde fields as a
//!   JSON object.
//! - An answer is plain JSON: `{"status_code": <int>, "status_message": <str>}` with
//!   `"response_message": <value>` added when the service returned something. Codes: 200
//!   OK; 400 bad serialisation; 403 the caller may not call the command (zmqrpc's
//!   permissions; pyzmqrpc3 has none); 451 no service for the command; 463 the service
//!   raised; 482 a proxy's downstream failed.
//! - A store-and-forward hop (zmqrpc's buffered proxy, a proxy that publishes) answers a
//!   call it took on with 200 and the status message [`ACCEPTED_MESSAGE`], no
//!   `response_message`: a pyzmqrpc3 caller gets `None` (as from pyzmqrpc3's own buffered
//!   proxy), a zmqrpc caller reads it as [`Says::Accepted`].
//! - The heartbeat is the bare string `zmq_sub_heartbeat`. pyzmqrpc3's own server never
//!   answers one that comes over REQ, leaving the caller stuck; this dialect answers it with
//!   an OK status.
//!
//! A command's class name is its [`Command::NAME`] unless [`Pyzmqrpc3::class`] names it
//! otherwise, so Rust names need not be Python class names. A command meant for a Python
//! peer has named fields (pyzmqrpc3's state is always a JSON object); a command with no
//! fields travels as `{}`. Answers carry no sequence number: a REQ socket pairs them with
//! their call, so a pipeline or a shared client cannot use this dialect.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use miniz_oxide::inflate::TINFLStatus;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zmqrpc_core::{Command, DecodeError, EncodeError, ErrorCode, Key, RemoteError};

use super::{Addressee, AnswerView, CallTag, Dialect, Refusal, Request, Says};

/// The heartbeat pyzmqrpc3 publishes.
pub const PYZMQRPC3_HEARTBEAT: &[u8] = b"zmq_sub_heartbeat";

/// The status message of a store-and-forward hop's answer: the call was taken on, to be
/// passed on later; its response does not come back.
pub const ACCEPTED_MESSAGE: &str = "Accepted, not yet delivered";

/// The answer of a store-and-forward hop (see [`ACCEPTED_MESSAGE`]).
const ACCEPTED_ANSWER: &[u8] =
    br#"{"status_code": 200, "status_message": "Accepted, not yet delivered"}"#;

/// What a REP socket answers a pyzmqrpc3 heartbeat with: an OK status.
const OK_ANSWER: &[u8] = br#"{"status_code": 200, "status_message": "OK"}"#;

/// pyzmqrpc3's status codes.
const OK: u16 = 200;
const BAD_SERIALISATION: u16 = 400;
const FORBIDDEN: u16 = 403;
const NO_SERVICE: u16 = 451;
const SERVICE_RAISED: u16 = 463;
const PROXY_FAILED: u16 = 482;

/// pyzmqrpc3's wire format; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Pyzmqrpc3 {
    names: Arc<ClassNames>,
}

/// Class names that differ from the commands' `NAME`s.
#[derive(Clone, Debug, Default)]
struct ClassNames {
    by_key: HashMap<Key, String>,
    by_class: HashMap<String, Key>,
}

impl Pyzmqrpc3 {
    /// The dialect, every command named by its [`Command::NAME`].
    pub fn new() -> Pyzmqrpc3 {
        Pyzmqrpc3::default()
    }

    /// Names command `C` `class` on the wire (its Python class name).
    ///
    /// ```
    /// # use zmqrpc_protocol::dialect::Pyzmqrpc3;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct SetLed { on: bool }
    /// # impl zmqrpc_core::Command for SetLed { const NAME: &'static str = "led.set"; type Response = (); }
    /// let dialect = Pyzmqrpc3::new().class::<SetLed>("SetLedCommand");
    /// assert_eq!(dialect.class_of::<SetLed>(), "SetLedCommand");
    /// ```
    pub fn class<C: Command>(mut self, class: impl Into<String>) -> Pyzmqrpc3 {
        let class = class.into();
        let names = Arc::make_mut(&mut self.names);
        names.by_class.insert(class.clone(), C::KEY);
        names.by_key.insert(C::KEY, class);
        self
    }

    /// The class name command `C` travels under.
    pub fn class_of<C: Command>(&self) -> &str {
        self.names
            .by_key
            .get(&C::KEY)
            .map_or(C::NAME, String::as_str)
    }

    /// The key of the command a class name stands for.
    fn key_of(&self, class: &str) -> Key {
        self.names
            .by_class
            .get(class)
            .copied()
            .unwrap_or_else(|| Key::of(class))
    }

    /// Writes `command` as a pyzmqrpc3 command message into `out`.
    fn encode_command<C: Command>(
        &self,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        // A command without fields is an empty state, as pyzmqrpc3's are.
        let state = json_value(command)?.unwrap_or_else(empty_object);
        let json = serde_json::to_vec(&Envelope {
            icmd: (self.class_of::<C>(), &state),
        })
        .map_err(|_| EncodeError::Body)?;
        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&json, 6);
        let text = base64::engine::general_purpose::STANDARD.encode(compressed);
        if text.len() > max {
            return Err(EncodeError::BufferTooSmall);
        }
        out.clear();
        out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    /// Writes the answer `{"status_code", "status_message"[, "response_message"]}`.
    fn encode_status(
        out: &mut Vec<u8>,
        code: u16,
        message: &str,
        response: Option<&RawValue>,
    ) -> Result<(), EncodeError> {
        out.clear();
        serde_json::to_writer(
            &mut *out,
            &Status {
                status_code: code,
                status_message: message,
                response_message: response,
            },
        )
        .map_err(|_| EncodeError::Body)
    }
}

/// A command on the wire: `{"_icmd_": [class, state]}`.
#[derive(Serialize, Deserialize)]
struct Envelope<S, C> {
    #[serde(rename = "_icmd_")]
    icmd: (C, S),
}

/// An answer on the wire.
#[derive(Serialize)]
struct Status<'a> {
    status_code: u16,
    status_message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_message: Option<&'a RawValue>,
}

/// An answer as read: the value stays raw JSON until its type is known.
#[derive(Deserialize)]
struct StatusIn<'a> {
    status_code: u16,
    #[serde(default)]
    status_message: Option<String>,
    #[serde(borrow, default)]
    response_message: Option<&'a RawValue>,
}

/// The pyzmqrpc3 status code for an error code.
pub fn status_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::UnknownCommand => NO_SERVICE,
        ErrorCode::ServiceFailed => SERVICE_RAISED,
        ErrorCode::Busy | ErrorCode::Timeout | ErrorCode::Unavailable => PROXY_FAILED,
        ErrorCode::BadFrame | ErrorCode::VersionMismatch | ErrorCode::TooLarge => BAD_SERIALISATION,
        ErrorCode::Forbidden => FORBIDDEN,
        ErrorCode::Other(code) => code,
    }
}

/// The error code for a pyzmqrpc3 status code other than 200; [`status_code`] maps it back.
pub fn error_code(status: u16) -> ErrorCode {
    match status {
        BAD_SERIALISATION => ErrorCode::BadFrame,
        NO_SERVICE => ErrorCode::UnknownCommand,
        FORBIDDEN => ErrorCode::Forbidden,
        SERVICE_RAISED => ErrorCode::ServiceFailed,
        // A proxy's downstream failed: worth trying again, like a native Unavailable.
        PROXY_FAILED => ErrorCode::Unavailable,
        other => ErrorCode::Other(other),
    }
}

fn refusal(message: String) -> Refusal<()> {
    Refusal {
        head: (),
        code: ErrorCode::BadFrame,
        message,
    }
}

impl Dialect for Pyzmqrpc3 {
    type Head = ();

    const HEARTBEAT: &'static [u8] = PYZMQRPC3_HEARTBEAT;

    // A REQ socket pairs an answer with its call: the answer itself says nothing of it.
    const NUMBERS_ANSWERS: bool = false;

    fn heartbeat_answer(message: &[u8]) -> Option<&'static [u8]> {
        (message == PYZMQRPC3_HEARTBEAT).then_some(OK_ANSWER)
    }

    fn read_request<'a>(
        &self,
        bytes: &'a [u8],
        scratch: &'a mut Vec<u8>,
        max_body: usize,
    ) -> Result<Request<'a, ()>, Refusal<()>> {
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(bytes)
            .map_err(|e| refusal(format!("not a pyzmqrpc3 command (base64: {e})")))?;
        // Inflation stops at `max_body`: a bomb costs that much and no more, and what it
        // inflated so far is freed with the error, so `scratch` keeps at most `max_body`.
        *scratch = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, max_body)
            .map_err(|e| match e.status {
            TINFLStatus::HasMoreOutput => Refusal {
                head: (),
                code: ErrorCode::TooLarge,
                message: format!(
                    "a command inflating past {max_body} bytes exceeds the limit (max_body)"
                ),
            },
            status => refusal(format!("not a pyzmqrpc3 command (zlib: {status:?})")),
        })?;
        let envelope: Envelope<&'a RawValue, std::borrow::Cow<'a, str>> =
            serde_json::from_slice(scratch)
                .map_err(|e| refusal(format!("not a pyzmqrpc3 command (JSON: {e})")))?;
        let (class, state) = envelope.icmd;
        Ok(Request {
            head: (),
            key: self.key_of(&class),
            seq: 0,
            body: state.get().as_bytes(),
        })
    }

    fn decode_command<C: Command>(&self, request: &Request<'_, ()>) -> Result<C, DecodeError> {
        decode_json(request.body)
    }

    fn encode_response<R: Serialize + ?Sized>(
        &self,
        _head: &(),
        response: &R,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        // A service that returns nothing answers without a response message, as the peer's.
        let value = json_value(response)?;
        Pyzmqrpc3::encode_status(out, OK, "OK", value.as_deref())?;
        if out.len() > max {
            out.clear();
            return Err(EncodeError::BufferTooSmall);
        }
        Ok(())
    }

    fn encode_error(&self, _head: &(), code: ErrorCode, message: &str, out: &mut Vec<u8>) {
        // Only a broken serializer fails on a number and a string; the answer is then empty.
        let _ = Pyzmqrpc3::encode_status(out, status_code(code), message, None);
    }

    fn encode_accepted(&self, _head: &(), out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(ACCEPTED_ANSWER);
    }

    fn unreadable(&self) {}

    fn encode_call<C: Command>(
        &self,
        seq: u32,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<CallTag, EncodeError> {
        self.encode_command(command, out, max)?;
        Ok(CallTag { seq, key: C::KEY })
    }

    fn encode_notify<C: Command>(
        &self,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        self.encode_command(command, out, max)
    }

    fn read_answer<'a>(&self, bytes: &'a [u8]) -> Result<AnswerView<'a>, DecodeError> {
        let status: StatusIn<'a> =
            serde_json::from_slice(bytes).map_err(|_| DecodeError::BadBody)?;
        // Answers name no call: one call at a time per REQ socket pairs them.
        let to = Addressee::Anyone;
        if status.status_code == OK {
            let says = match status.response_message {
                Some(value) => Says::Response(value.get().as_bytes()),
                None if status.status_message.as_deref() == Some(ACCEPTED_MESSAGE) => {
                    Says::Accepted
                }
                None => Says::Response(b"null"),
            };
            return Ok(AnswerView { to, says });
        }
        let message = status
            .status_message
            .unwrap_or_else(|| format!("error status {}", status.status_code));
        Ok(AnswerView {
            to,
            says: Says::Error(RemoteError::new(error_code(status.status_code), &message)),
        })
    }

    fn decode_response<R: DeserializeOwned>(&self, body: &[u8]) -> Result<R, DecodeError> {
        decode_json(body)
    }
}

/// `value` as JSON, in its fields' order; `None` for `null` (a unit value).
fn json_value<T: Serialize + ?Sized>(value: &T) -> Result<Option<Box<RawValue>>, EncodeError> {
    let json = serde_json::to_string(value).map_err(|_| EncodeError::Body)?;
    if json == "null" {
        return Ok(None);
    }
    RawValue::from_string(json)
        .map(Some)
        .map_err(|_| EncodeError::Body)
}

fn empty_object() -> Box<RawValue> {
    // `{}` is valid JSON: this cannot fail.
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!())
}

/// Decodes JSON as a `T`. An empty object also stands for a value with no fields (a unit
/// struct, `()`), as pyzmqrpc3 sends a command without state.
fn decode_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(json).or_else(|error| {
        let empty = json.iter().filter(|b| !b.is_ascii_whitespace()).eq(b"{}");
        if empty {
            serde_json::from_slice(b"null").map_err(|_| json_error(&error))
        } else {
            Err(json_error(&error))
        }
    })
}

fn json_error(error: &serde_json::Error) -> DecodeError {
    if error.is_eof() {
        DecodeError::BodyTruncated
    } else {
        DecodeError::BadBody
    }
}

#[cfg(test)]
mod tests;
