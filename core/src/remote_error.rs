//! [`RemoteError`]: what a server (or proxy) answers instead of a reply.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest [`RemoteError::message`] in bytes; longer messages are cut at a character boundary.
pub const MAX_ERROR_MESSAGE: usize = 120;

/// Why a request failed on the far side.
///
/// Travels as a `u16`; codes this version does not know decode as [`ErrorCode::Other`], so
/// newer peers can add codes without breaking older ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorCode {
    /// No service is registered for the request's key.
    UnknownCommand,
    /// The request could not be decoded (truncated, garbage, body of the wrong shape).
    BadFrame,
    /// The request's protocol version is not one this server speaks.
    VersionMismatch,
    /// The service ran and failed (returned an error or panicked); the message says why.
    ServiceFailed,
    /// The server or proxy is full and refused the request; retry later.
    Busy,
    /// A proxy's downstream did not answer in time.
    Timeout,
    /// A proxy's downstream could not be reached or failed.
    Unavailable,
    /// The request was larger than the receiver accepts.
    TooLarge,
    /// The caller may not call (or notify) this command: no permission allows it.
    Forbidden,
    /// A code this version does not know.
    Other(u16),
}

impl ErrorCode {
    /// Whether the request was not served for a passing reason and may succeed if sent
    /// again: the receiver was full ([`Busy`](ErrorCode::Busy)) or a proxy could not reach
    /// its downstream ([`Timeout`](ErrorCode::Timeout), [`Unavailable`](ErrorCode::Unavailable)).
    /// Every other code would be the same the next time.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::Busy | ErrorCode::Timeout | ErrorCode::Unavailable
        )
    }

    /// The code's wire value.
    pub const fn to_u16(self) -> u16 {
        match self {
            ErrorCode::UnknownCommand => 1,
            ErrorCode::BadFrame => 2,
            ErrorCode::VersionMismatch => 3,
            ErrorCode::ServiceFailed => 4,
            ErrorCode::Busy => 5,
            ErrorCode::Timeout => 6,
            ErrorCode::Unavailable => 7,
            ErrorCode::TooLarge => 8,
            ErrorCode::Forbidden => 9,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code of a wire value; unknown values become [`ErrorCode::Other`].
    pub const fn from_u16(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::UnknownCommand,
            2 => ErrorCode::BadFrame,
            3 => ErrorCode::VersionMismatch,
            4 => ErrorCode::ServiceFailed,
            5 => ErrorCode::Busy,
            6 => ErrorCode::Timeout,
            7 => ErrorCode::Unavailable,
            8 => ErrorCode::TooLarge,
            9 => ErrorCode::Forbidden,
            other => ErrorCode::Other(other),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::UnknownCommand => f.write_str("unknown command"),
            ErrorCode::BadFrame => f.write_str("bad frame"),
            ErrorCode::VersionMismatch => f.write_str("protocol version mismatch"),
            ErrorCode::ServiceFailed => f.write_str("service failed"),
            ErrorCode::Busy => f.write_str("busy"),
            ErrorCode::Timeout => f.write_str("downstream timeout"),
            ErrorCode::Unavailable => f.write_str("downstream unavailable"),
            ErrorCode::TooLarge => f.write_str("request too large"),
            ErrorCode::Forbidden => f.write_str("forbidden"),
            ErrorCode::Other(code) => write!(f, "error code {code}"),
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.to_u16())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u16::deserialize(deserializer).map(ErrorCode::from_u16)
    }
}

/// The body of an error frame: a code a program can match and a message a person can read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RemoteError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Details, at most [`MAX_ERROR_MESSAGE`] bytes.
    pub message: heapless::String<MAX_ERROR_MESSAGE>,
}

impl RemoteError {
    /// An error with `message` cut to [`MAX_ERROR_MESSAGE`] bytes at a character boundary.
    ///
    /// ```
    /// use zmqrpc_core::{ErrorCode, RemoteError, MAX_ERROR_MESSAGE};
    /// let long = "é".repeat(100); // 200 bytes
    /// let err = RemoteError::new(ErrorCode::ServiceFailed, &long);
    /// assert!(err.message.len() <= MAX_ERROR_MESSAGE);
    /// assert!(long.starts_with(err.message.as_str()));
    /// ```
    pub fn new(code: ErrorCode, message: &str) -> RemoteError {
        let mut end = message.len().min(MAX_ERROR_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut text = heapless::String::new();
        // Cannot fail: `end` is at most the capacity and on a character boundary.
        let _ = text.push_str(&message[..end]);
        RemoteError {
            code,
            message: text,
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl core::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_u16() {
        for code in 0..=20u16 {
            assert_eq!(ErrorCode::from_u16(code).to_u16(), code);
        }
        assert_eq!(ErrorCode::from_u16(4), ErrorCode::ServiceFailed);
        assert_eq!(ErrorCode::from_u16(999), ErrorCode::Other(999));
    }

    #[test]
    fn message_is_cut_at_a_char_boundary() {
        let text = "ab€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€";
        assert!(text.len() > MAX_ERROR_MESSAGE);
        let err = RemoteError::new(ErrorCode::Busy, text);
        assert!(err.message.len() <= MAX_ERROR_MESSAGE);
        assert!(err.message.len() > MAX_ERROR_MESSAGE - 3);
        assert!(text.starts_with(err.message.as_str()));
    }
}
