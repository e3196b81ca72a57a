//! The wire frame: a fixed 14-byte header and a postcard body.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | protocol version ([`VERSION`]) |
//! | 1 | 1 | [`Kind`]: 0 request, 1 notify, 2 reply, 3 error, 4 heartbeat, 5 accepted |
//! | 2 | 4 | sequence number, little-endian (0 for notify) |
//! | 6 | 8 | command [`Key`], little-endian |
//! | 14 | … | postcard body: the command, its response, or a [`RemoteError`] |
//!
//! Encoding writes into a caller's buffer; decoding borrows the body from the input without
//! copying. Every malformed input is a [`DecodeError`], never a panic.

use core::cell::Cell;
use core::fmt;

use serde::{Deserialize, Serialize};

use crate::nesting::Nesting;
use crate::{Key, RemoteError};

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 14;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Kind {
    /// A call that expects a [`Kind::Reply`], a [`Kind::Error`] or a [`Kind::Accepted`].
    Request = 0,
    /// A one-way call; nothing answers it.
    Notify = 1,
    /// A successful answer; the body is the command's response.
    Reply = 2,
    /// A failed answer; the body is a [`RemoteError`].
    Error = 3,
    /// Liveness only: sequence 0, key 0, empty body. Transports answer or absorb it; it never
    /// reaches a service. See [`HEARTBEAT`].
    Heartbeat = 4,
    /// An answer from a store-and-forward hop (a buffered proxy, a proxy that publishes):
    /// it took the call on and will pass it on, and the response, if the command has one,
    /// will not come back. Empty body.
    Accepted = 5,
}

impl Kind {
    /// Whether a server serves a frame of this kind: a [`Kind::Request`] or a
    /// [`Kind::Notify`]. Everything else (answers, heartbeats) is refused or absorbed.
    pub const fn is_request(self) -> bool {
        matches!(self, Kind::Request | Kind::Notify)
    }

    /// Whether a frame of this kind answers a request: a [`Kind::Reply`], a [`Kind::Error`]
    /// or a [`Kind::Accepted`].
    pub const fn is_answer(self) -> bool {
        matches!(self, Kind::Reply | Kind::Error | Kind::Accepted)
    }

    /// The kind of a wire byte, if it names one.
    pub const fn from_u8(byte: u8) -> Option<Kind> {
        match byte {
            0 => Some(Kind::Request),
            1 => Some(Kind::Notify),
            2 => Some(Kind::Reply),
            3 => Some(Kind::Error),
            4 => Some(Kind::Heartbeat),
            5 => Some(Kind::Accepted),
            _ => None,
        }
    }
}

/// The complete heartbeat frame.
pub const HEARTBEAT: [u8; HEADER_LEN] = [
    VERSION,
    Kind::Heartbeat as u8,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
];

/// Whether `bytes` is a heartbeat frame, which a transport handles without decoding further.
pub fn is_heartbeat(bytes: &[u8]) -> bool {
    bytes.len() == HEADER_LEN && bytes.get(..2) == Some(&HEARTBEAT[..2])
}

/// The fixed part of every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// What the frame is.
    pub kind: Kind,
    /// Matches a reply to its request; 0 for notifications.
    pub seq: u32,
    /// The command the frame is about.
    pub key: Key,
}

impl Header {
    /// Stands for a request that could not be read far enough to have a sequence number or
    /// key (garbage, a wrong version, a multipart message). Its error answer,
    /// `Header::UNREADABLE.error()`, is the *unaddressed* error: a caller takes it as the
    /// answer to whatever it asked (it says why the request was refused), never as a value.
    pub const UNREADABLE: Header = Header::request(0, Key(0));

    /// The header of request number `seq` for command `key`.
    pub const fn request(seq: u32, key: Key) -> Header {
        Header {
            kind: Kind::Request,
            seq,
            key,
        }
    }

    /// The header of a one-way notification for command `key`.
    pub const fn notify(key: Key) -> Header {
        Header {
            kind: Kind::Notify,
            seq: 0,
            key,
        }
    }

    /// The header of a successful reply to this request (same sequence number and key).
    pub const fn reply(&self) -> Header {
        Header {
            kind: Kind::Reply,
            ..*self
        }
    }

    /// The header of an error reply to this request (same sequence number and key).
    pub const fn error(&self) -> Header {
        Header {
            kind: Kind::Error,
            ..*self
        }
    }

    /// The header of the acceptance of this request by a store-and-forward hop (same
    /// sequence number and key): see [`Kind::Accepted`].
    pub const fn accepted(&self) -> Header {
        Header {
            kind: Kind::Accepted,
            ..*self
        }
    }

    /// Whether `answer` is a reply, error or acceptance of this request: same sequence
    /// number and key.
    pub fn is_answered_by(&self, answer: &Header) -> bool {
        answer.kind.is_answer() && answer.seq == self.seq && answer.key == self.key
    }

    /// Whether this is the unaddressed error: the answer to a request that could not be
    /// read (see [`Header::UNREADABLE`]).
    pub fn is_unaddressed_error(&self) -> bool {
        *self == Header::UNREADABLE.error()
    }

    /// Whether `answer` is the answer this request should take: its own reply or error, or
    /// the unaddressed error (which can only be an error, never a value).
    pub fn takes_answer(&self, answer: &Header) -> bool {
        self.is_answered_by(answer) || answer.is_unaddressed_error()
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) -> Result<(), EncodeError> {
        let out = out
            .get_mut(..HEADER_LEN)
            .ok_or(EncodeError::BufferTooSmall)?;
        out[0] = VERSION;
        out[1] = self.kind as u8;
        out[2..6].copy_from_slice(&self.seq.to_le_bytes());
        out[6..14].copy_from_slice(&self.key.to_le_bytes());
        Ok(())
    }

    /// Reads the header at the start of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<Header, DecodeError> {
        let version = *bytes.first().ok_or(DecodeError::Truncated)?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DecodeError::Truncated)?;
        let kind = Kind::from_u8(header[1]).ok_or(DecodeError::UnknownKind(header[1]))?;
        let [_, _, s0, s1, s2, s3, k @ ..] = *header;
        Ok(Header {
            kind,
            seq: u32::from_le_bytes([s0, s1, s2, s3]),
            key: Key::from_le_bytes(k),
        })
    }
}

/// A decoded frame whose body is still postcard bytes, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Frame<'a> {
    /// The fixed header.
    pub header: Header,
    /// The postcard-encoded body.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits `bytes` into header and body, checking version and kind.
    ///
    /// ```
    /// use zmqrpc_core::{frame, DecodeError, Frame, Header, Key};
    /// let mut buf = [0u8; 32];
    /// let bytes = frame::encode(&Header::request(7, Key::of("echo")), "hi", &mut buf).unwrap();
    /// let frame = Frame::decode(bytes).unwrap();
    /// assert_eq!(frame.header.seq, 7);
    /// assert_eq!(frame.body::<&str>().unwrap(), "hi");
    /// assert_eq!(Frame::decode(&bytes[..5]), Err(DecodeError::Truncated));
    /// ```
    pub fn decode(bytes: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        let header = Header::read(bytes)?;
        Ok(Frame {
            header,
            body: &bytes[HEADER_LEN..],
        })
    }

    /// Decodes the body as a `T`, which must use every byte of it.
    pub fn body<T: Deserialize<'a>>(&self) -> Result<T, DecodeError> {
        decode_body(self.body)
    }

    /// Decodes the body of an [`Kind::Error`] frame.
    pub fn remote_error(&self) -> Result<RemoteError, DecodeError> {
        self.body()
    }

    /// What an answer frame says: the response `R` of a [`Kind::Reply`], or the
    /// [`RemoteError`] of a [`Kind::Error`]. A [`Kind::Accepted`] holds no response:
    /// [`DecodeError::Accepted`]; any other kind is [`DecodeError::NotAnAnswer`]. Whether the answer belongs to a given request is
    /// [`Header::takes_answer`]'s question.
    ///
    /// ```
    /// use zmqrpc_core::{frame, ErrorCode, Frame, Header, Key, RemoteError};
    /// let request = Header::request(9, Key::of("add"));
    /// let mut buf = [0u8; 64];
    /// let reply = frame::encode(&request.reply(), &5u32, &mut buf).unwrap();
    /// assert_eq!(Frame::decode(reply).unwrap().outcome::<u32>(), Ok(Ok(5)));
    /// let refusal = RemoteError::new(ErrorCode::Busy, "full");
    /// let error = frame::encode(&request.error(), &refusal, &mut buf).unwrap();
    /// assert_eq!(Frame::decode(error).unwrap().outcome::<u32>(), Ok(Err(refusal)));
    /// ```
    pub fn outcome<R: Deserialize<'a>>(&self) -> Result<Result<R, RemoteError>, DecodeError> {
        match self.header.kind {
            Kind::Reply => self.body().map(Ok),
            Kind::Error => self.remote_error().map(Err),
            Kind::Accepted => Err(DecodeError::Accepted),
            kind => Err(DecodeError::NotAnAnswer(kind)),
        }
    }
}

/// Encodes `header` and `body` into `buf`, returning the bytes written.
pub fn encode<'b, T: Serialize + ?Sized>(
    header: &Header,
    body: &T,
    buf: &'b mut [u8],
) -> Result<&'b [u8], EncodeError> {
    header.write(buf)?;
    let body_len = postcard::to_slice(body, &mut buf[HEADER_LEN..])
        .map_err(|e| match e {
            postcard::Error::SerializeBufferFull => EncodeError::BufferTooSmall,
            _ => EncodeError::Body,
        })?
        .len();
    Ok(&buf[..HEADER_LEN + body_len])
}

/// Decodes a frame body (the bytes after the header) as a `T`, which must use every byte.
/// A value nested deeper than [`MAX_NESTING`](crate::nesting::MAX_NESTING) levels is
/// refused as [`DecodeError::TooDeep`] before it can exhaust the stack.
pub fn decode_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    let tripped = Cell::new(false);
    let mut decoder = postcard::Deserializer::from_bytes(body);
    let value =
        T::deserialize(Nesting::new(&mut decoder, &tripped)).map_err(|e| match tripped.get() {
            true => DecodeError::TooDeep,
            false => body_error(e),
        })?;
    let rest = decoder.finalize().map_err(body_error)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::TrailingBytes(rest.len()))
    }
}

fn body_error(error: postcard::Error) -> DecodeError {
    match error {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::BodyTruncated,
        _ => DecodeError::BadBody,
    }
}

/// Why bytes are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the header.
    Truncated,
    /// The first byte is not a version this crate speaks.
    UnknownVersion(u8),
    /// The kind byte names no [`Kind`].
    UnknownKind(u8),
    /// The body ends before the value it should hold.
    BodyTruncated,
    /// The body is not a valid encoding of the expected type.
    BadBody,
    /// The body holds a valid value followed by this many unexpected bytes.
    TrailingBytes(usize),
    /// An answer was expected, and the frame is of this other kind.
    NotAnAnswer(Kind),
    /// The body nests values deeper than [`MAX_NESTING`](crate::nesting::MAX_NESTING)
    /// levels.
    TooDeep,
    /// A response was expected, and the answer is a [`Kind::Accepted`]: a store-and-forward
    /// hop took the call on; its response does not come back.
    Accepted,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "frame shorter than its {HEADER_LEN}-byte header"),
            DecodeError::UnknownVersion(v) => {
                write!(
                    f,
                    "unknown protocol version {v} (this end speaks {VERSION})"
                )
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            DecodeError::BodyTruncated => f.write_str("frame body is truncated"),
            DecodeError::BadBody => f.write_str("frame body does not decode as the expected type"),
            DecodeError::TrailingBytes(n) => write!(f, "frame body has {n} trailing bytes"),
            DecodeError::NotAnAnswer(kind) => write!(f, "a {kind:?} frame where an answer was due"),
            DecodeError::TooDeep => write!(
                f,
                "frame body nests deeper than {} levels",
                crate::nesting::MAX_NESTING
            ),
            DecodeError::Accepted => f.write_str(
                "the call was accepted for later delivery; its response does not come back",
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a frame could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer cannot hold the frame.
    BufferTooSmall,
    /// The value refused to serialize (a serde `Serialize` impl returned an error).
    Body,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall => f.write_str("buffer too small for the frame"),
            EncodeError::Body => f.write_str("value failed to serialize"),
        }
    }
}

impl core::error::Error for EncodeError {}
