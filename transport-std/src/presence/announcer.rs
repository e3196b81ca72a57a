//! [`Announcer`]: a thread that tells a roster a node is alive, every interval, and that it
//! is leaving when it stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Announce, Presence, MIN_EVERY};
use crate::socket::stats::FailureLog;
use crate::{ConfigError, Credentials, RpcClient, TransportError};

/// How often a node announces unless told.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);

/// The longest an announcement waits for the roster's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// The longest the last word (`leaving`) waits, so that a stop is not held up by a roster
/// that is gone.
const LEAVING_WAIT: Duration = Duration::from_millis(500);

/// An announcer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnnouncerCounts {
    /// Announcements the roster answered.
    pub announced: u64,
    /// Announcements it did not (timed out, refused, unreachable).
    pub unanswered: u64,
}

#[derive(Default)]
struct Counters {
    announced: AtomicU64,
    unanswered: AtomicU64,
}

/// Builds an [`Announcer`].
pub struct AnnouncerBuilder {
    presence: Presence,
    endpoints: Vec<String>,
    every: Duration,
    credentials: Option<Credentials>,
    ctx: Option<zmq::Context>,
}

impl AnnouncerBuilder {
    /// A roster to announce to (connected to; several are used in turn).
    pub fn to(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// How often to announce (default [`DEFAULT_EVERY`], at least [`MIN_EVERY`]).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(MIN_EVERY);
        self
    }

    /// What to present to a protected roster (PLAIN or CURVE).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Uses `ctx` (needed for `inproc://`).
    pub fn context(mut self, ctx: &zmq::Context) -> Self {
        self.ctx = Some(ctx.clone());
        self
    }

    /// Connects and starts announcing, the first time at once. Without a roster
    /// ([`to`](Self::to)) it is refused: [`ConfigError::NoEndpoint`].
    pub fn start(self) -> Result<Announcer, TransportError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoint { what: "announcer" }.into());
        }
        let mut client = RpcClient::builder();
        for endpoint in &self.endpoints {
            client = client.req(endpoint);
        }
        if let Some(credentials) = self.credentials {
            client = client.credentials(credentials);
        }
        if let Some(ctx) = &self.ctx {
            client = client.context(ctx);
        }
        let client = client.connect()?;
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = mpsc::channel();
        let announcing = Announcing {
            client,
            presence: self.presence,
            every: self.every,
            counters: Arc::clone(&counters),
            failures: FailureLog::every(Duration::from_secs(60)),
        };
        let thread = std::thread::Builder::new()
            .name("zmqrpc-announcer".into())
            .spawn(move || announcing.run(&stopped))
            .map_err(|e| TransportError::Spawn {
                thread: "zmqrpc-announcer".to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Announcer {
            stop,
            thread: Some(thread),
            counters,
        })
    }
}

/// Announces a node to a roster until dropped; see the [module docs](super).
pub struct Announcer {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Announcer {
    /// Starts building an announcer of `presence`.
    pub fn builder(presence: Presence) -> AnnouncerBuilder {
        AnnouncerBuilder {
            presence,
            endpoints: Vec::new(),
            every: DEFAULT_EVERY,
            credentials: None,
            ctx: None,
        }
    }

    /// Its counters.
    pub fn counts(&self) -> AnnouncerCounts {
        AnnouncerCounts {
            announced: self.counters.announced.load(Ordering::Relaxed),
            unanswered: self.counters.unanswered.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Announcer {
    /// Says the node is leaving (waiting for the roster at most half a second), and joins
    /// the thread.
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The announcing thread's state.
struct Announcing {
    client: RpcClient,
    presence: Presence,
    every: Duration,
    counters: Arc<Counters>,
    failures: FailureLog,
}

impl Announcing {
    fn run(mut self, stop: &mpsc::Receiver<()>) {
        let mut next = Instant::now();
        loop {
            let left = next.saturating_duration_since(Instant::now());
            match stop.recv_timeout(left) {
                Err(RecvTimeoutError::Timeout) => {}
                // Asked to stop, or the handle is gone: the last word.
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
            self.announce(false);
            next += self.every;
            // After a long stall (a suspended device), announce at once, not in a burst.
            next = next.max(Instant::now());
        }
        self.announce(true);
    }

    fn announce(&mut self, leaving: bool) {
        let wait = match leaving {
            true => LEAVING_WAIT,
            false => ANSWER_WAIT.min(self.every),
        };
        let announce = Announce {
            presence: self.presence.clone(),
            every_ms: u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX),
            leaving,
        };
        match self.client.call_timeout(&announce, wait) {
            Ok(()) => {
                self.counters.announced.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.unanswered.fetch_add(1, Ordering::Relaxed);
                let name = format_args!("announcer of {}", self.presence.name);
                self.failures.warn(&name, &format_args!("not heard: {e}"));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_announcer_without_a_roster_is_refused_at_start() {
        let presence = Presence::new("lonely", "server", Vec::new());
        match Announcer::builder(presence).start() {
            Err(TransportError::Config(ConfigError::NoEndpoint { what })) => {
                assert_eq!(what, "announcer");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("started without a roster"),
        }
    }
}
