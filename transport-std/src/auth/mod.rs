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

pub mod curve;
mod permissions;
mod zap;

pub use curve::{KeyError, KeyPair, PublicKey};
pub use permissions::{Action, Permissions, PermissionsError, ADMIN_PREFIX};

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::socket::options::Security;

pub(crate) use zap::Verifier;
pub use zap::{AuthCounts, AuthStats};

/// What a connecting socket presents to the socket it connects to: a username and password
/// (PLAIN), or a CURVE key pair with the server's public key pinned.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    presented: Presented,
}

#[derive(Clone, PartialEq, Eq)]
enum Presented {
    Plain { username: String, password: String },
    Curve { keys: KeyPair, server: PublicKey },
}

impl Credentials {
    /// PLAIN credentials for `username`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            presented: Presented::Plain {
                username: username.into(),
                password: password.into(),
            },
        }
    }

    /// CURVE credentials: the socket proves itself with `keys` and talks only to the server
    /// holding the secret half of `server` (a wrong server fails the handshake).
    pub fn curve(keys: KeyPair, server: PublicKey) -> Credentials {
        Credentials {
            presented: Presented::Curve { keys, server },
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

    /// The username of PLAIN credentials; empty for CURVE credentials, whose server names
    /// the client by its key (see [`is_curve`](Credentials::is_curve)).
    pub fn username(&self) -> &str {
        match &self.presented {
            Presented::Plain { username, .. } => username,
            Presented::Curve { .. } => "",
        }
    }

    /// Whether these are CURVE credentials (a key pair and the server's key).
    pub fn is_curve(&self) -> bool {
        matches!(self.presented, Presented::Curve { .. })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.presented {
            Presented::Plain { username, .. } => f
                .debug_struct("Credentials")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Presented::Curve { keys, server } => f
                .debug_struct("Credentials")
                .field("public", &keys.public)
                .field("server", server)
                .finish(),
        }
    }
}

impl Security for Credentials {
    /// Makes `socket` present these credentials (call before it connects; never on a socket
    /// that binds).
    fn apply(&self, socket: &zmq::Socket) -> zmq::Result<()> {
        match &self.presented {
            Presented::Plain { username, password } => {
                socket.set_plain_username(Some(username))?;
                socket.set_plain_password(Some(password))
            }
            Presented::Curve { keys, server } => {
                socket.set_curve_serverkey(server.as_bytes())?;
                socket.set_curve_publickey(keys.public.as_bytes())?;
                socket.set_curve_secretkey(keys.secret.as_bytes())
            }
        }
    }
}

/// Who a bound socket lets connect: users with passwords (PLAIN), or, with a server key
/// pair ([`Users::curve`]), clients by their CURVE public keys, each under a user id.
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
    /// The server's key pair: set, the socket speaks CURVE and checks `keys`.
    server: Option<KeyPair>,
    /// Client public keys allowed, with the user id each is known by.
    keys: HashMap<PublicKey, String>,
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

    /// A CURVE allow-list: the bound socket proves itself with `server` (clients pin its
    /// public half) and lets in the clients whose keys are added with
    /// [`with_key`](Users::with_key) or [`with_keys_file`](Users::with_keys_file).
    pub fn curve(server: KeyPair) -> Users {
        Users {
            server: Some(server),
            ..Users::default()
        }
    }

    /// Allows the client holding the secret half of `key`, known to services as `user_id`
    /// (`caller.user_id`).
    pub fn with_key(mut self, user_id: impl Into<String>, key: PublicKey) -> Users {
        self.keys.insert(key, user_id.into());
        self
    }

    /// Adds the clients of a keys file: one `user-id:<40 characters of Z85>` a line (blank
    /// lines and `#` comments skipped). A user id or a key named twice is refused, naming
    /// the line; so is a line that is not a key, without showing it.
    pub fn with_keys_file(mut self, path: impl AsRef<Path>) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path.as_ref()).map_err(|e| UsersError::Read {
            path: path.as_ref().display().to_string(),
            reason: e.to_string(),
        })?;
        let mut first_user: HashMap<&str, usize> = HashMap::new();
        let mut first_key: HashMap<PublicKey, usize> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, key) = line
                .split_once(':')
                .filter(|(user, _)| !user.is_empty())
                .and_then(|(user, key)| Some((user, PublicKey::from_z85(key).ok()?)))
                .ok_or(UsersError::BadKeyLine { line: index + 1 })?;
            let line = index + 1;
            if let Some(first) = first_user.get(user).or_else(|| first_key.get(&key)) {
                return Err(UsersError::Duplicate {
                    user: user.to_owned(),
                    line,
                    first: *first,
                });
            }
            first_user.insert(user, line);
            first_key.insert(key, line);
            self.keys.insert(key, user.to_owned());
        }
        Ok(self)
    }

    /// Whether any user has a password.
    pub(crate) fn has_passwords(&self) -> bool {
        !self.passwords.is_empty()
    }

    /// Whether any client key is allowed.
    pub(crate) fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The server key pair of a CURVE allow-list.
    pub(crate) fn server_keys(&self) -> Option<&KeyPair> {
        self.server.as_ref()
    }

    /// The user id of the client with `key`, if it is allowed.
    pub fn user_of_key(&self, key: &[u8]) -> Option<&str> {
        let key = PublicKey::from_bytes(<[u8; 32]>::try_from(key).ok()?);
        self.keys.get(&key).map(String::as_str)
    }

    /// Whether `username` exists with this `password`.
    pub fn verify(&self, username: &str, password: &str) -> bool {
        self.passwords
            .get(username)
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), password.as_bytes()))
    }

    /// How many users there are (with a password or a key).
    pub fn len(&self) -> usize {
        self.passwords.len() + self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.passwords.keys().chain(self.keys.values()))
            .finish()
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
    /// A line of a keys file is not `user-id:<40 characters of Z85>` (the line is not shown:
    /// it may hold a mistyped secret).
    BadKeyLine {
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
            UsersError::BadKeyLine { line } => write!(
                f,
                "keys file line {line} is not `user-id:<public key, 40 characters of Z85>`"
            ),
            UsersError::Duplicate { user, line, first } => write!(
                f,
                "users file line {line} names user {user:?} again (first on line {first})"
            ),
        }
    }
}

impl std::error::Error for UsersError {}
