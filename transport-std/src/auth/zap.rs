//! The ZAP handler (RFC 27): one thread per context, judging the handshakes of every bound
//! socket of that context that verifies its peers.
//!
//! Each verifying socket registers a ZAP domain of its own with the users it accepts
//! ([`Verifier::start`]), and the handler judges a peer by the domain its socket names. The
//! first registration in a context starts the handler (bound to `inproc://zeromq.zap.01`,
//! before the socket that needs it binds); later ones in the same context join it, so a
//! proxy's two bound sides, or a server and a client sharing a context for `inproc://`, each
//! keep their own users. The handler stops when the last registration of its context drops.
//!
//! A context cannot be asked which handler it has, so each handler also binds a marker,
//! `inproc://zmqrpc.zap.<id>`, in its context: a registration finds its context's handler
//! as the one whose marker its context refuses to bind again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use super::curve::SecretKey;
use super::Users;
use crate::error::ConfigError;
use crate::socket::options::Security;
use crate::socket::shutdown::{Running, Shutdown, StopListener};
use crate::socket::stats::{bump, counters};
use crate::TransportError;

const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

counters! {
    /// Live counters of the peers one bound socket (or one side) verified.
    AuthStats;
    /// An [`AuthStats`] reading.
    AuthCounts {
        /// Handshakes allowed.
        allowed,
        /// Handshakes refused (wrong user or password, or another mechanism).
        denied,
    }
}

/// A bound socket's part in the handshake: it verifies every peer that connects against its
/// users, through its context's ZAP handler. Cheap to clone; the registration ends when the
/// last clone drops.
#[derive(Clone)]
pub(crate) struct Verifier(Arc<Registration>);

struct Registration {
    service: Arc<ZapService>,
    domain: String,
    stats: Arc<AuthStats>,
    /// A CURVE server's secret key (none: PLAIN).
    curve: Option<SecretKey>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.service.domains).remove(&self.domain);
    }
}

impl Verifier {
    /// Registers `users` with the ZAP handler of `ctx`, starting it if `ctx` has none.
    pub(crate) fn start(ctx: &zmq::Context, users: Users) -> Result<Verifier, TransportError> {
        static NEXT_DOMAIN: AtomicU64 = AtomicU64::new(0);
        let curve = users.server_keys().map(|keys| keys.secret.clone());
        match (&curve, users.has_passwords(), users.has_keys()) {
            (Some(_), true, _) => {
                return Err(ConfigError::MixedAuth {
                    reason: "users with passwords on a CURVE socket (one mechanism a socket)",
                }
                .into())
            }
            (None, _, true) => {
                return Err(ConfigError::MixedAuth {
                    reason: "client keys without a server key pair (make them with Users::curve)",
                }
                .into())
            }
            _ => {}
        }
        let service = ZapService::of(ctx)?;
        let domain = format!("zmqrpc.{}", NEXT_DOMAIN.fetch_add(1, Ordering::Relaxed));
        let stats = Arc::new(AuthStats::default());
        let entry = Arc::new(Domain {
            users,
            stats: stats.clone(),
        });
        lock(&service.domains).insert(domain.clone(), entry);
        Ok(Verifier(Arc::new(Registration {
            service,
            domain,
            stats,
            curve,
        })))
    }
    /// The counters of the peers this registration judged.
    pub(crate) fn stats(&self) -> &AuthStats {
        &self.0.stats
    }
}

impl Security for Verifier {
    /// Makes `socket` verify its peers (call before it binds): a PLAIN server, or a CURVE
    /// server proving itself with its secret key.
    fn apply(&self, socket: &zmq::Socket) -> zmq::Result<()> {
        match &self.0.curve {
            Some(secret) => {
                socket.set_curve_server(true)?;
                socket.set_curve_secretkey(secret.as_bytes())?;
            }
            None => socket.set_plain_server(true)?,
        }
        socket.set_zap_domain(&self.0.domain)
    }
}

/// What one registered domain accepts.
struct Domain {
    users: Users,
    stats: Arc<AuthStats>,
}

type Domains = Arc<Mutex<HashMap<String, Arc<Domain>>>>;

/// A context's ZAP handler thread and the domains it judges.
struct ZapService {
    id: u64,
    domains: Domains,
    /// Stops and joins the thread when the service drops (its last registration went).
    _running: Running<AuthStats>,
}

/// Every live handler, one per context that has one.
static SERVICES: Mutex<Vec<Weak<ZapService>>> = Mutex::new(Vec::new());

impl ZapService {
    /// The handler of `ctx`: the one running there, or a new one.
    fn of(ctx: &zmq::Context) -> Result<Arc<ZapService>, TransportError> {
        // Held throughout, so two registrations in one new context cannot both start one.
        let mut services = lock(&SERVICES);
        let mut attempts = 0;
        loop {
            services.retain(|service| service.strong_count() > 0);
            for service in services.iter().filter_map(Weak::upgrade) {
                if service.lives_in(ctx)? {
                    return Ok(service);
                }
            }
            match ZapService::spawn(ctx) {
                Ok(service) => {
                    services.push(Arc::downgrade(&service));
                    return Ok(service);
                }
                // A stopped handler whose socket libzmq's reaper has not closed yet: wait a
                // moment for it. Longer, and it is a handler that is not zmqrpc's.
                Err(e) if e.is_address_in_use() && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn marker(id: u64) -> String {
        format!("inproc://zmqrpc.zap.{id}")
    }

    /// Whether this handler runs in `ctx`: there its marker is taken.
    ///
    /// A probe that could take the marker gives it back with `unbind`, which libzmq does
    /// at once for inproc; closing the probe alone would leave the marker bound until the
    /// reaper thread gets to it, and the next probe in `ctx` would take that for this
    /// handler.
    fn lives_in(&self, ctx: &zmq::Context) -> Result<bool, TransportError> {
        let marker = ZapService::marker(self.id);
        let probe = ctx
            .socket(zmq::PAIR)
            .map_err(|e| TransportError::new("socket", &marker, e))?;
        match probe.bind(&marker) {
            Ok(()) => {
                probe
                    .unbind(&marker)
                    .map_err(|e| TransportError::new("unbind", &marker, e))?;
                Ok(false)
            }
            Err(zmq::Error::EADDRINUSE) => Ok(true),
            Err(e) => Err(TransportError::new("bind", &marker, e)),
        }
    }

    /// Binds the ZAP endpoint and the marker in `ctx` and starts the thread.
    fn spawn(ctx: &zmq::Context) -> Result<Arc<ZapService>, TransportError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let bound = |endpoint: &str, kind| {
            let err = |op| move |e| TransportError::new(op, endpoint, e);
            let socket = ctx.socket(kind).map_err(err("socket"))?;
            socket.set_linger(0).map_err(err("set_linger"))?;
            socket.bind(endpoint).map_err(err("bind"))?;
            Ok::<_, TransportError>(socket)
        };
        let socket = bound(ZAP_ENDPOINT, zmq::REP)?;
        let marker = bound(&ZapService::marker(id), zmq::PAIR)?;
        let shutdown = Shutdown::new();
        let stop = StopListener::new(ctx, shutdown.clone())?;
        let domains = Domains::default();
        let judged = domains.clone();
        let totals = Arc::new(AuthStats::default());
        let counters = totals.clone();
        const THREAD: &str = "zmqrpc-zap";
        let running = Running::spawn(THREAD, shutdown, totals, move || {
            let _marker = marker;
            serve_zap(&socket, &stop, &judged, &counters)
        })
        .map_err(|e| TransportError::Spawn {
            thread: THREAD.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Arc::new(ZapService {
            id,
            domains,
            _running: running,
        }))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve_zap(
    socket: &zmq::Socket,
    stop: &StopListener,
    domains: &Mutex<HashMap<String, Arc<Domain>>>,
    totals: &AuthStats,
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
        let domain = request
            .get(2)
            .and_then(|name| std::str::from_utf8(name).ok())
            .and_then(|name| lock(domains).get(name).cloned());
        let verdict = judge(&request, domain.as_ref().map(|d| &d.users));
        let allowed = verdict.0 == b"200";
        for stats in std::iter::once(totals).chain(domain.as_ref().map(|d| &*d.stats)) {
            bump(if allowed {
                &stats.allowed
            } else {
                &stats.denied
            });
        }
        let request_id = request.get(1).map_or(&[][..], Vec::as_slice);
        let (status, text, user_id) = verdict;
        socket
            .send_multipart([&b"1.0"[..], request_id, status, text, user_id, b""], 0)
            .map_err(|e| TransportError::new("send", ZAP_ENDPOINT, e))?;
    }
}

/// The ZAP verdict on one request, by the users of its domain (none: a domain nobody
/// registered): status code, status text, user id.
fn judge<'a>(
    request: &'a [Vec<u8>],
    users: Option<&'a Users>,
) -> (&'static [u8], &'static [u8], &'a [u8]) {
    const DENIED: (&[u8], &[u8], &[u8]) = (b"400", b"invalid username or password", b"");
    let Some(users) = users else {
        return (b"400", b"no zmqrpc socket verifies this domain", b"");
    };
    let curve = users.server_keys().is_some();
    // version, request id, domain, address, routing id, mechanism, credentials…
    match request {
        [version, _, _, _, _, mechanism, username, password]
            if version == b"1.0" && mechanism == b"PLAIN" && !curve =>
        {
            match (std::str::from_utf8(username), std::str::from_utf8(password)) {
                (Ok(user), Ok(pass)) if users.verify(user, pass) => (b"200", b"OK", username),
                _ => DENIED,
            }
        }
        [version, _, _, _, _, mechanism, key]
            if version == b"1.0" && mechanism == b"CURVE" && curve =>
        {
            match users.user_of_key(key) {
                Some(user) => (b"200", b"OK", user.as_bytes()),
                None => (b"400", b"unknown client key", b""),
            }
        }
        _ => (b"400", b"mechanism not accepted here", b""),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;

    /// A ZAP request (RFC 27) for `mechanism` with `credentials`.
    fn request(version: &str, mechanism: &str, credentials: &[&str]) -> Vec<Vec<u8>> {
        let head = [version, "7", "zmqrpc.0", "127.0.0.1", "", mechanism];
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
            judge(&request, Some(&users)),
            (&b"200"[..], &b"OK"[..], &b"ops"[..])
        );
    }

    #[test]
    fn a_wrong_password_an_unknown_user_or_bad_utf8_is_denied() {
        let users = Users::new().with("ops", "s3cret");
        for credentials in [["ops", "wrong"], ["nobody", "s3cret"], ["ops", ""]] {
            let request = request("1.0", "PLAIN", &credentials);
            let verdict = judge(&request, Some(&users));
            assert_eq!(verdict.0, b"400", "{credentials:?}");
            assert_eq!(verdict.2, b"", "a denied peer gets no user id");
        }
        let mut bad_utf8 = request("1.0", "PLAIN", &["ops", "s3cret"]);
        bad_utf8[6] = vec![0xff, 0xfe];
        assert_eq!(judge(&bad_utf8, Some(&users)).0, b"400");
    }

    #[test]
    fn another_mechanism_version_shape_or_an_unknown_domain_is_denied() {
        let users = Users::new().with("ops", "s3cret");
        for request in [
            request("1.0", "NULL", &[]),
            request("1.0", "CURVE", &["key"]),
            request("2.0", "PLAIN", &["ops", "s3cret"]),
            request("1.0", "PLAIN", &["ops"]),
            request("1.0", "PLAIN", &["ops", "s3cret", "extra"]),
            Vec::new(),
        ] {
            let verdict = judge(&request, Some(&users));
            assert_eq!((verdict.0, verdict.2), (&b"400"[..], &b""[..]));
        }
        let right = request("1.0", "PLAIN", &["ops", "s3cret"]);
        assert_eq!(judge(&right, None).0, b"400");
    }

    #[test]
    fn registrations_in_one_context_share_its_handler_and_keep_their_users() {
        let ctx = zmq::Context::new();
        let first = Verifier::start(&ctx, Users::new().with("a", "1")).unwrap();
        let second = Verifier::start(&ctx, Users::new().with("b", "2")).unwrap();
        assert!(Arc::ptr_eq(&first.0.service, &second.0.service));
        assert_ne!(first.0.domain, second.0.domain);
        let elsewhere = Verifier::start(&zmq::Context::new(), Users::new()).unwrap();
        assert!(!Arc::ptr_eq(&first.0.service, &elsewhere.0.service));
        let service = Arc::downgrade(&first.0.service);
        drop(first);
        assert_eq!(lock(&second.0.service.domains).len(), 1);
        drop(second);
        assert!(
            service.upgrade().is_none(),
            "the last registration stops it"
        );
        // And a new one starts in the same context.
        let again = Verifier::start(&ctx, Users::new()).unwrap();
        assert_eq!(lock(&again.0.service.domains).len(), 1);
    }

    /// Regression: finding a context's handler probed every other handler's marker by
    /// binding it and closing the probe, and libzmq unbinds a closed socket's inproc
    /// endpoints later, on its reaper thread. A second registration in the same context
    /// could then find a probe still bound, take another context's handler for its own,
    /// and register its domain there: the socket's own handler refused every peer
    /// ("no zmqrpc socket verifies this domain"). Seen as a proxy whose two sides verify,
    /// started beside others in one process, refusing the right key.
    #[test]
    fn a_second_registration_finds_its_own_handler_beside_others() {
        let others: Vec<_> = (0..8)
            .map(|_| Verifier::start(&zmq::Context::new(), Users::new()).unwrap())
            .collect();
        for round in 0..200 {
            let ctx = zmq::Context::new();
            let first = Verifier::start(&ctx, Users::new()).unwrap();
            let second = Verifier::start(&ctx, Users::new()).unwrap();
            assert!(
                Arc::ptr_eq(&first.0.service, &second.0.service),
                "round {round}: the second registration went to another context's handler"
            );
        }
        drop(others);
    }
}
