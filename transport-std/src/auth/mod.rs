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

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::socket::shutdown::{Running, Shutdown, StopListener};
use crate::socket::stats::{bump, counters};
use crate::TransportError;

/// The ZAP domain zmqrpc's protected sockets use.
pub(crate) const ZAP_DOMAIN: &str = "zmqrpc";
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

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

counters! {
    /// Live counters of a ZAP handler.
    AuthStats;
    /// An [`AuthStats`] reading.
    AuthCounts {
        /// Handshakes allowed.
        allowed,
        /// Handshakes refused (wrong user or password, or a mechanism other than PLAIN).
        denied,
    }
}

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

/// Starts a ZAP handler for `users` in `ctx`, on its own thread.
pub(crate) fn start_zap_handler(
    ctx: &zmq::Context,
    users: Users,
) -> Result<Running<AuthStats>, TransportError> {
    let socket = ctx
        .socket(zmq::REP)
        .map_err(|e| TransportError::new("socket", ZAP_ENDPOINT, e))?;
    socket
        .set_linger(0)
        .map_err(|e| TransportError::new("set_linger", ZAP_ENDPOINT, e))?;
    // EADDRINUSE means another ZAP handler serves this context — or a stopped one whose
    // socket libzmq's reaper has not closed yet: wait a moment for that.
    let mut attempts = 0;
    loop {
        match socket.bind(ZAP_ENDPOINT) {
            Ok(()) => break,
            Err(zmq::Error::EADDRINUSE) if attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                return Err(TransportError::new(
                    "bind (one protected receiver per context)",
                    ZAP_ENDPOINT,
                    e,
                ))
            }
        }
    }
    let shutdown = Shutdown::new();
    let stop = StopListener::new(ctx, shutdown.clone())?;
    let stats = Arc::new(AuthStats::default());
    let counters = stats.clone();
    const THREAD: &str = "zmqrpc-zap";
    Running::spawn(THREAD, shutdown, stats, move || {
        serve_zap(&socket, &stop, &users, &counters)
    })
    .map_err(|e| TransportError::Spawn {
        thread: THREAD.to_owned(),
        reason: e.to_string(),
    })
}

fn serve_zap(
    socket: &zmq::Socket,
    stop: &StopListener,
    users: &Users,
    stats: &AuthStats,
) -> Result<(), TransportError> {
    loop {
        let mut items = [
            stop.socket.as_poll_item(zmq::POLLIN),
            socket.as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, -1) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(TransportError::new("poll", ZAP_ENDPOINT, e)),
        }
        if stop.stop_requested() {
            return Ok(());
        }
        let request = match socket.recv_multipart(zmq::DONTWAIT) {
            Ok(parts) => parts,
            Err(zmq::Error::EAGAIN) => continue,
            Err(e) => return Err(TransportError::new("recv", ZAP_ENDPOINT, e)),
        };
        let verdict = judge(&request, users);
        if verdict.0 == b"200" {
            bump(&stats.allowed);
        } else {
            bump(&stats.denied);
        }
        let request_id = request.get(1).map_or(&[][..], Vec::as_slice);
        let (status, text, user_id) = verdict;
        socket
            .send_multipart([&b"1.0"[..], request_id, status, text, user_id, b""], 0)
            .map_err(|e| TransportError::new("send", ZAP_ENDPOINT, e))?;
    }
}

/// The ZAP verdict on one request: status code, status text, user id.
fn judge<'r>(request: &'r [Vec<u8>], users: &Users) -> (&'static [u8], &'static [u8], &'r [u8]) {
    const DENIED: (&[u8], &[u8], &[u8]) = (b"400", b"invalid username or password", b"");
    // version, request id, domain, address, routing id, mechanism, credentials…
    match request {
        [version, _, _, _, _, mechanism, username, password]
            if version == b"1.0" && mechanism == b"PLAIN" =>
        {
            match (std::str::from_utf8(username), std::str::from_utf8(password)) {
                (Ok(user), Ok(pass)) if users.verify(user, pass) => (b"200", b"OK", username),
                _ => DENIED,
            }
        }
        _ => (b"400", b"zmqrpc accepts only PLAIN here", b""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ZAP request (RFC 27) for `mechanism` with `credentials`.
    fn request(version: &str, mechanism: &str, credentials: &[&str]) -> Vec<Vec<u8>> {
        let head = [version, "7", ZAP_DOMAIN, "127.0.0.1", "", mechanism];
        head.iter()
            .chain(credentials)
            .map(|part| part.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn the_right_password_is_allowed_with_the_user_as_its_id() {
        let users = Users::new().with("ops", "s3cret");
        let request = request("1.0", "PLAIN", &["ops", "s3cret"]);
        assert_eq!(
            judge(&request, &users),
            (&b"200"[..], &b"OK"[..], &b"ops"[..])
        );
    }

    #[test]
    fn a_wrong_password_an_unknown_user_or_bad_utf8_is_denied() {
        let users = Users::new().with("ops", "s3cret");
        for credentials in [["ops", "wrong"], ["nobody", "s3cret"], ["ops", ""]] {
            let request = request("1.0", "PLAIN", &credentials);
            let verdict = judge(&request, &users);
            assert_eq!(verdict.0, b"400", "{credentials:?}");
            assert_eq!(verdict.2, b"", "a denied peer gets no user id");
        }
        let mut bad_utf8 = request("1.0", "PLAIN", &["ops", "s3cret"]);
        bad_utf8[6] = vec![0xff, 0xfe];
        assert_eq!(judge(&bad_utf8, &users).0, b"400");
    }

    #[test]
    fn another_mechanism_version_or_shape_is_denied() {
        let users = Users::new().with("ops", "s3cret");
        for request in [
            request("1.0", "NULL", &[]),
            request("1.0", "CURVE", &["key"]),
            request("2.0", "PLAIN", &["ops", "s3cret"]),
            request("1.0", "PLAIN", &["ops"]),
            request("1.0", "PLAIN", &["ops", "s3cret", "extra"]),
            Vec::new(),
        ] {
            let verdict = judge(&request, &users);
            assert_eq!((verdict.0, verdict.2), (&b"400"[..], &b""[..]));
        }
    }
}
