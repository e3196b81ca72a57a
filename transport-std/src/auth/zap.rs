//! The ZAP handler (RFC 27): a thread in the receiver's context that judges each peer's
//! PLAIN credentials against the [`Users`].

use std::sync::Arc;

use super::Users;
use crate::socket::shutdown::{Running, Shutdown, StopListener};
use crate::socket::stats::{bump, counters};
use crate::TransportError;

const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

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
    use crate::auth::ZAP_DOMAIN;

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
