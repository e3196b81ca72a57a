//! Username/password on every link: ZMQ PLAIN, verified by a ZAP handler (RFC 27).
//!
//! One rule for every socket: **a socket that binds verifies the peers that connect to it; a
//! socket that connects presents its credentials.** Never the other way round, whatever the
//! socket carries: a bound REP, ROUTER or PUB checks every peer's [`Credentials`] against its
//! [`Users`] (a PLAIN *server*), and a REQ, DEALER or SUB that connects presents its own (a
//! PLAIN *client*). libzmq takes a socket's PLAIN role from its own options, not from bind or
//! connect, so a bound socket made a PLAIN client would hand its password to any stranger
//! who connects and claims the server's part; zmqrpc never configures one that way, and a
//! builder given credentials for sockets that only bind (or users for sockets that only
//! connect) refuses with a [`ConfigError`](crate::ConfigError).
//!
//! PLAIN sends the password in clear: it keeps strangers out of a network, not eavesdroppers.
//!
//! The library runs the ZAP handler itself, one per context, started before the first
//! verifying socket of the context binds and stopped after the last one closes; each bound
//! socket (or side) that verifies has its own users.

mod zap;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

pub(crate) use zap::Verifier;
pub use zap::{AuthCounts, AuthStats};

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

    /// Reads credentials from a file: its first line is `user:password` (the password is
    /// everything after the first `:`). Refused if group or others may read it (see
    /// [`read_secret_file`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Credentials, UsersError> {
        let text = read_secret_file(path.as_ref())?;
        let line = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches('\r');
        match line.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok(Credentials::new(user, password))
            }
            _ => Err(UsersError::BadLine { line: 1 }),
        }
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Makes `socket` present these credentials (call before it connects; never on a socket
    /// that binds).
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

    /// Reads `user:password` lines. A user named on two lines is refused (naming both): the
    /// later password silently winning would hide a mistake in the file.
    pub fn parse(text: &str) -> Result<Users, UsersError> {
        let mut users = Users::new();
        let mut first_seen = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    if let Some(&first) = first_seen.get(user) {
                        return Err(UsersError::Duplicate {
                            user: user.to_owned(),
                            line: index + 1,
                            first,
                        });
                    }
                    first_seen.insert(user, index + 1);
                    users = users.with(user, password);
                }
                _ => return Err(UsersError::BadLine { line: index + 1 }),
            }
        }
        Ok(users)
    }

    /// Reads a users file (see [`Users::parse`]); refused if group or others may read it
    /// (see [`read_secret_file`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Users, UsersError> {
        Users::parse(&read_secret_file(path.as_ref())?)
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

/// Reads a file holding secrets (users, credentials, keys), refusing one that group or others
/// may read, as ssh refuses an open private key: its mode is read from the open file, and
/// nothing of its content is read or shown when it is refused.
pub fn read_secret_file(path: &Path) -> Result<String, UsersError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let shown = || path.display().to_string();
    let read_error = |e: std::io::Error| UsersError::Read {
        path: shown(),
        reason: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(UsersError::Exposed {
            path: shown(),
            mode: mode & 0o7777,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_error)?;
    Ok(text)
}

/// Compares without an early exit, so timing does not reveal how much of a password matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A users file (or another file of secrets) could not be read or is not valid.
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
    /// The file may be read by group or others; it must be readable by its owner only
    /// (`chmod 600`).
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A user is named a second time.
    Duplicate {
        /// The user.
        user: String,
        /// The line naming it again, from 1.
        line: usize,
        /// The line that named it first.
        first: usize,
    },
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsersError::Read { path, reason } => write!(f, "cannot read {path}: {reason}"),
            UsersError::Exposed { path, mode } => write!(
                f,
                "{path} holds secrets but group or others may read it (mode {mode:04o}): \
                 refused; make it readable by its owner only (chmod 600 {path})"
            ),
            UsersError::BadLine { line } => {
                write!(f, "users file line {line} is not `user:password`")
            }
            UsersError::Duplicate { user, line, first } => write!(
                f,
                "users file line {line} names user {user:?} again (first on line {first})"
            ),
        }
    }
}

impl std::error::Error for UsersError {}
