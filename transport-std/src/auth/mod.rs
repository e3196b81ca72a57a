//! Username/password on every link: ZMQ PLAIN, verified by a ZAP handler (RFC 27).
//!
//! A protected receiver (the REP and SUB sides of a server or proxy) is a PLAIN *server*: it
//! asks the ZAP handler about every peer's [`Credentials`] and checks them against its
//! [`Users`]. A sender (the REQ and PUB sides of a client or proxy) presents its credentials.
//! PLAIN sends the password in clear: it keeps strangers out of a network, not eavesdroppers
//! (the seed's requirement; CURVE is not needed here).
//!
//! The library starts the ZAP handler itself, in the receiver's context and before any of its
//! sockets binds, and stops it with the receiver. One ZAP handler serves one context: give
//! each protected receiver its own context (the default).

mod zap;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

pub(crate) use zap::start_zap_handler;
pub use zap::{AuthCounts, AuthStats};

/// The ZAP domain zmqrpc's protected sockets use.
pub(crate) const ZAP_DOMAIN: &str = "zmqrpc";

/// A username and password a sender presents.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials for `username`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Makes `socket` present these credentials (call before connecting or binding).
    pub(crate) fn apply(&self, socket: &zmq::Socket) -> zmq::Result<()> {
        socket.set_plain_username(Some(&self.username))?;
        socket.set_plain_password(Some(&self.password))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The users a protected receiver accepts.
///
/// Built in code, or read from a file with one `user:password` a line (blank lines and lines
/// starting with `#` are skipped; the password is everything after the first `:`).
///
/// ```
/// use zmqrpc_transport_std::auth::Users;
/// let users = Users::parse("# site A\nsensor-1:s3cret\nops:correct:horse\n")?;
/// assert!(users.verify("ops", "correct:horse"));
/// assert!(!users.verify("sensor-1", "wrong"));
/// # Ok::<(), zmqrpc_transport_std::auth::UsersError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Users {
    passwords: HashMap<String, String>,
}

impl Users {
    /// No users (a receiver protected by it refuses everyone).
    pub fn new() -> Users {
        Users::default()
    }

    /// Adds or replaces a user.
    pub fn with(mut self, username: impl Into<String>, password: impl Into<String>) -> Users {
        self.passwords.insert(username.into(), password.into());
        self
    }

    /// Reads `user:password` lines.
    pub fn parse(text: &str) -> Result<Users, UsersError> {
        let mut users = Users::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    users = users.with(user, password);
                }
                _ => return Err(UsersError::BadLine { line: index + 1 }),
            }
        }
        Ok(users)
    }

    /// Reads a users file (see [`Users::parse`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path.as_ref()).map_err(|e| UsersError::Read {
            path: path.as_ref().display().to_string(),
            reason: e.to_string(),
        })?;
        Users::parse(&text)
    }

    /// Whether `username` exists with this `password`.
    pub fn verify(&self, username: &str, password: &str) -> bool {
        self.passwords
            .get(username)
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), password.as_bytes()))
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.passwords.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.passwords.keys()).finish()
    }
}

/// Compares without an early exit, so timing does not reveal how much of a password matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A users file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsersError {
    /// The file could not be read.
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A line is not `user:password`.
    BadLine {
        /// Its number, from 1.
        line: usize,
    },
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsersError::Read { path, reason } => {
                write!(f, "cannot read users file {path}: {reason}")
            }
            UsersError::BadLine { line } => {
                write!(f, "users file line {line} is not `user:password`")
            }
        }
    }
}

impl std::error::Error for UsersError {}

/// A socket's part in authentication.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role<'a> {
    /// No security mechanism (NULL).
    Open,
    /// PLAIN server: verifies peers through the ZAP handler.
    Verify,
    /// PLAIN client: presents these credentials.
    Present(&'a Credentials),
}

impl Role<'_> {
    /// The role of a receiving socket.
    pub(crate) fn verifier(protected: bool) -> Role<'static> {
        if protected {
            Role::Verify
        } else {
            Role::Open
        }
    }

    /// The role of a sending socket.
    pub(crate) fn presenter(credentials: Option<&Credentials>) -> Role<'_> {
        credentials.map_or(Role::Open, Role::Present)
    }

    /// Configures `socket` for the role (before it binds or connects).
    pub(crate) fn apply(self, socket: &zmq::Socket) -> zmq::Result<()> {
        match self {
            Role::Open => Ok(()),
            Role::Verify => {
                socket.set_plain_server(true)?;
                socket.set_zap_domain(ZAP_DOMAIN)
            }
            Role::Present(credentials) => credentials.apply(socket),
        }
    }
}
