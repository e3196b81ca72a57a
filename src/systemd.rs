//! systemd's service protocol for a node: what a `Type=notify` unit expects of it.
//!
//! A [`Notifier`] reads the environment systemd gives a unit's process (`$NOTIFY_SOCKET`,
//! and `$WATCHDOG_USEC` with `$WATCHDOG_PID` when the unit sets `WatchdogSec=`) and sends
//! `READY=1` once the node's sockets are bound, `STOPPING=1` when it stops, and `STATUS=`
//! lines. [`Notifier::watch`] starts a thread that, every half watchdog interval (every
//! [`STATUS_EVERY`] without a watchdog), reads the node loop's [`Liveness`]: while the loop
//! turns it sends `WATCHDOG=1` and the node's status line; once the loop stands still (stuck
//! in a service, a handler, a system call) it sends no `WATCHDOG=1`, so systemd restarts the
//! unit when `WatchdogSec=` runs out, and its status says how long the loop has been stuck.
//!
//! Outside a notify unit (no `$NOTIFY_SOCKET`) every call does nothing and no thread starts.
//!
//! ```no_run
//! # use zmqrpc::transport::RpcServer;
//! # use zmqrpc::systemd::Notifier;
//! let server = RpcServer::builder().rep("tcp://*:30000").bind()?;
//! let notifier = Notifier::from_env();
//! notifier.ready("serving");
//! let stats = server.stats();
//! let watch = notifier.watch(server.shutdown().liveness(), move || {
//!     zmqrpc::systemd::summary(stats.snapshot().dispatch.named())
//! })?;
//! server.run()?;
//! notifier.stopping();
//! drop(watch);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A unit for it:
//!
//! ```ini
//! [Service]
//! Type=notify
//! NotifyAccess=main
//! WatchdogSec=10
//! Restart=on-failure
//! ExecStart=/usr/local/bin/zmqrpc-server --bind tcp://*:30000
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use zmqrpc_transport_std::{Liveness, IDLE_TURN};

/// How often the status line is sent when the unit has no watchdog.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The shortest tick the watch keeps: two of the loop's [`IDLE_TURN`]s, so an idle loop
/// always turns between two readings. A `WatchdogSec=` under twice this is too short to
/// tell a waiting loop from a stuck one; the watch warns and ticks at this.
pub const SHORTEST_TICK: Duration = IDLE_TURN.saturating_mul(2);

/// What systemd asked of this process; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Notifier {
    /// Whether `$NOTIFY_SOCKET` names a socket to notify.
    enabled: bool,
    /// `WATCHDOG_USEC`, if set for this process.
    watchdog: Option<Duration>,
    /// Whether a notification has failed already: the first failure is a warning, the
    /// rest (one a tick) are not repeated at that level.
    failed: Arc<AtomicBool>,
}

impl Notifier {
    /// What the environment says: a notify socket (`$NOTIFY_SOCKET`), and a watchdog interval
    /// (`$WATCHDOG_USEC`, for this process: `$WATCHDOG_PID`). The variables stay set.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let mut usec = 0;
        let watchdog = (enabled && sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
            .then(|| Duration::from_micros(usec));
        Notifier {
            enabled,
            watchdog,
            failed: Arc::default(),
        }
    }

    /// Whether there is a service manager to notify.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The watchdog interval (`WatchdogSec=`), if the unit set one for this process.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `READY=1` with a status line: the sockets are bound (and a spool replayed).
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
    }

    /// A status line (`STATUS=`), shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(&one_line(status))]);
    }

    /// `STOPPING=1`: the node is shutting down.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Starts the thread that feeds the watchdog while `liveness` moves and sends `status()`
    /// (see the [module docs](self)); `None` outside a notify unit. Dropping the [`Watch`]
    /// stops the thread.
    pub fn watch(
        &self,
        liveness: Liveness,
        status: impl Fn() -> String + Send + 'static,
    ) -> std::io::Result<Option<Watch>> {
        if !self.enabled {
            return Ok(None);
        }
        let tick = self.tick();
        let notifier = self.clone();
        let ends = Arc::new(Ends::default());
        let thread_ends = ends.clone();
        let thread = std::thread::Builder::new()
            .name("systemd-watch".into())
            .spawn(move || {
                // Says the thread exited however it exits (a status closure may panic).
                let exit = Exit(thread_ends);
                let ends = &exit.0;
                let mut watch = Watching::new(liveness.turns(), Instant::now());
                while !ends.stop_asked_within(tick) && !liveness.is_stopping() {
                    let line = status();
                    match watch.observe(liveness.turns(), Instant::now()) {
                        Health::Turning => notifier.fed(&line),
                        Health::Stuck { since, first } => {
                            let secs = since.as_secs_f64();
                            if first {
                                log::warn!("the node's loop has not turned for {secs:.1} s");
                            }
                            notifier.status(&format!("stuck for {secs:.0} s; {line}"));
                        }
                    }
                }
            })?;
        Ok(Some(Watch {
            ends,
            thread: Some(thread),
        }))
    }

    /// How often the watch reads the loop: half the watchdog interval, as `sd_watchdog_enabled`
    /// advises, and no less than [`SHORTEST_TICK`].
    fn tick(&self) -> Duration {
        match self.watchdog {
            Some(interval) => {
                if interval / 2 < SHORTEST_TICK {
                    log::warn!(
                        "WatchdogSec={interval:?} is too short to tell a waiting loop from a \
                         stuck one; the watchdog is fed every {SHORTEST_TICK:?}"
                    );
                }
                (interval / 2).max(SHORTEST_TICK)
            }
            None => STATUS_EVERY,
        }
    }

    /// `WATCHDOG=1` (if the unit has a watchdog) with the status line.
    fn fed(&self, status: &str) {
        let status = one_line(status);
        match self.watchdog {
            Some(_) => self.send(&[NotifyState::Watchdog, NotifyState::Status(&status)]),
            None => self.send(&[NotifyState::Status(&status)]),
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, states) {
            match self.failed.swap(true, Ordering::Relaxed) {
                false => log::warn!("cannot notify the service manager: {e}"),
                true => log::debug!("cannot notify the service manager: {e}"),
            }
        }
    }
}

/// How long dropping a [`Watch`] waits for its thread. A notification is a datagram that
/// blocks while the service manager's queue is full: a manager that never reads must not
/// hold up the node's exit.
pub const WATCH_STOP_WAIT: Duration = Duration::from_secs(1);

/// The watchdog thread of [`Notifier::watch`]; dropping it stops the thread (waiting for it
/// at most [`WATCH_STOP_WAIT`]).
#[derive(Debug)]
pub struct Watch {
    ends: Arc<Ends>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        match self.ends.stop_and_wait(WATCH_STOP_WAIT) {
            true => {
                let _ = thread.join();
            }
            false => {
                log::warn!("the service manager reads no notifications: leaving its watch blocked")
            }
        }
    }
}

/// How a watch ends: asked to stop by its [`Watch`], and saying it has.
#[derive(Debug, Default)]
struct Ends {
    /// (stop asked, thread exited)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Ends {
    fn lock(&self) -> MutexGuard<'_, (bool, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits `time` for a stop; whether one was asked.
    fn stop_asked_within(&self, time: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, time, |(stop, _)| !*stop)
            .unwrap_or_else(PoisonError::into_inner);
        state.0
    }

    fn exited(&self) {
        self.lock().1 = true;
        self.changed.notify_all();
    }

    /// Asks the thread to stop and waits at most `time` for it; whether it exited.
    fn stop_and_wait(&self, time: Duration) -> bool {
        let mut state = self.lock();
        state.0 = true;
        self.changed.notify_all();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, time, |(_, exited)| !*exited)
            .unwrap_or_else(PoisonError::into_inner);
        state.1
    }
}

/// Tells its [`Ends`] the watch thread exited, when dropped.
struct Exit(Arc<Ends>);

impl Drop for Exit {
    fn drop(&mut self) {
        self.0.exited();
    }
}

/// What two readings of a loop's turns a tick apart say.
#[derive(Debug, PartialEq)]
enum Health {
    /// It turned since the last reading.
    Turning,
    /// It has not turned for `since`; `first`: the first reading that saw it stand still.
    Stuck { since: Duration, first: bool },
}

/// The watch's state, apart from its thread and its clock: the last count of turns and when
/// it last moved.
struct Watching {
    turns: u64,
    moved: Instant,
    stuck: bool,
}

impl Watching {
    fn new(turns: u64, now: Instant) -> Watching {
        Watching {
            turns,
            moved: now,
            stuck: false,
        }
    }

    fn observe(&mut self, turns: u64, now: Instant) -> Health {
        if turns != self.turns {
            self.turns = turns;
            self.moved = now;
            self.stuck = false;
            return Health::Turning;
        }
        let first = !std::mem::replace(&mut self.stuck, true);
        Health::Stuck {
            since: now.saturating_duration_since(self.moved),
            first,
        }
    }
}

/// A status line from counters: those that are not zero, as `name=value`, or `idle` if none
/// is (`STATUS=` is one short line in `systemctl status`).
pub fn summary<N: std::fmt::Display>(counters: impl IntoIterator<Item = (N, u64)>) -> String {
    let line: Vec<String> = counters
        .into_iter()
        .filter(|&(_, value)| value != 0)
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    match line.is_empty() {
        true => "idle".to_owned(),
        false => line.join(" "),
    }
}

/// A status line stays one line: the protocol is newline-separated assignments.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_turns_is_healthy_and_one_that_stands_still_is_stuck_from_its_last_turn() {
        let start = Instant::now();
        let mut watching = Watching::new(7, start);
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(watching.observe(9, at(500)), Health::Turning);
        assert_eq!(
            watching.observe(9, at(1000)),
            Health::Stuck {
                since: Duration::from_millis(500),
                first: true
            }
        );
        assert_eq!(
            watching.observe(9, at(1500)),
            Health::Stuck {
                since: Duration::from_millis(1000),
                first: false
            }
        );
        assert_eq!(watching.observe(10, at(2000)), Health::Turning);
        assert!(matches!(
            watching.observe(10, at(2500)),
            Health::Stuck { first: true, .. }
        ));
    }

    #[test]
    fn a_summary_names_the_counters_that_moved() {
        assert_eq!(
            summary([("served", 3), ("failed", 0), ("late", 1)]),
            "served=3 late=1"
        );
        assert_eq!(summary([("served", 0)]), "idle");
    }

    #[test]
    fn outside_a_notify_unit_nothing_is_sent_and_no_watch_starts() {
        let notifier = Notifier {
            enabled: false,
            watchdog: Some(Duration::from_secs(1)),
            failed: Arc::default(),
        };
        let shutdown_less = zmqrpc_transport_std::Receiver::builder().shutdown();
        assert!(notifier
            .watch(shutdown_less.liveness(), String::new)
            .unwrap()
            .is_none());
        notifier.ready("ready");
        assert!(!notifier.failed.load(Ordering::Relaxed));
    }

    #[test]
    fn a_status_stays_one_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }
}
