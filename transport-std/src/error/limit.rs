//! [`LimitReached`]: which limit of the operating system or of libzmq a failure ran into, and
//! the setting that raises it; [`raise_open_file_limit`] for a process about to hold many
//! connections.
//!
//! libzmq says `EMFILE` for both: a socket it cannot make because its context holds
//! `ZMQ_MAX_SOCKETS` sockets, and a file it cannot open (a connection, a listening port, the
//! event descriptor every socket has) because the process holds `RLIMIT_NOFILE` of them.
//! The two are told apart by counting the process's open files.

use std::fmt;

/// A limit a socket operation ran into, with what it was and what raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitReached {
    /// The process holds as many files as `RLIMIT_NOFILE` lets it: each connection, each
    /// listening endpoint and each libzmq socket holds one.
    OpenFiles {
        /// Files the process had open when this was found (`None` where `/proc` does not
        /// tell).
        open: Option<u64>,
        /// The soft limit, the one that applies.
        soft: u64,
        /// The hard limit, up to which the process itself may raise the soft one.
        hard: u64,
    },
    /// The libzmq context holds as many sockets as it may (`ZMQ_MAX_SOCKETS`).
    ContextSockets {
        /// The context's limit: libzmq's default, which the `zmq` crate cannot change.
        max: u32,
    },
}

/// libzmq's default `ZMQ_MAX_SOCKETS`, compiled into `zmq.h`.
const MAX_SOCKETS_DEFAULT: u32 = 1023;

impl LimitReached {
    /// Which limit an `EMFILE` from operation `op` ran into: the open files when the process
    /// is at (or near) its limit, or when `op` was not making a socket; else the context's
    /// sockets.
    pub(crate) fn of(op: &str) -> LimitReached {
        let (soft, hard) = open_file_limit();
        let (open, near) = match open_files() {
            // Files closed since the failure (libzmq's I/O thread opens and closes
            // connections meanwhile) blur the count: within 1/32 of the limit is at it.
            FileCount::Counted(open) => {
                let margin = (soft / 32).max(16);
                (Some(open), open.saturating_add(margin) >= soft)
            }
            // Not even the directory to count them could be opened: at the limit.
            FileCount::NoneLeft => (None, true),
            FileCount::Untold => (None, false),
        };
        if op != "socket" || near {
            LimitReached::OpenFiles { open, soft, hard }
        } else {
            LimitReached::ContextSockets {
                max: MAX_SOCKETS_DEFAULT,
            }
        }
    }

    /// The open-file limit, if the process has no file left to open.
    pub(crate) fn if_no_file_left() -> Option<LimitReached> {
        let FileCount::NoneLeft = open_files() else {
            return None;
        };
        let (soft, hard) = open_file_limit();
        Some(LimitReached::OpenFiles {
            open: None,
            soft,
            hard,
        })
    }
}

impl fmt::Display for LimitReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitReached::OpenFiles { open, soft, hard } => {
                write!(f, "the process's open-file limit (RLIMIT_NOFILE ")?;
                match open {
                    Some(open) => write!(f, "{soft}, {open} open")?,
                    None => write!(f, "{soft}")?,
                }
                write!(
                    f,
                    ") is reached: each connection, endpoint and socket holds a file; raise \
                     the soft limit (up to the hard limit, {hard}) with `ulimit -n`, systemd's \
                     LimitNOFILE= or zmqrpc's raise_open_file_limit()"
                )
            }
            LimitReached::ContextSockets { max } => write!(
                f,
                "the libzmq context holds its most sockets (ZMQ_MAX_SOCKETS, {max}): a client \
                 holds three per endpoint (its socket and the two ends of its monitor); give \
                 this context fewer of them, or build them without a context so that they \
                 share the process's"
            ),
        }
    }
}

/// The process's open-file limits, soft and hard (`u64::MAX` for unlimited or unknown).
fn open_file_limit() -> (u64, u64) {
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((u64::MAX, u64::MAX))
}

/// What counting the process's open files found.
enum FileCount {
    /// This many.
    Counted(u64),
    /// No file could be opened to count them: the process holds all it may.
    NoneLeft,
    /// `/proc` does not tell.
    Untold,
}

/// How many files the process has open, where `/proc` tells.
fn open_files() -> FileCount {
    match std::fs::read_dir("/proc/self/fd") {
        // Less the descriptor reading the directory holds.
        Ok(entries) => FileCount::Counted((entries.count() as u64).saturating_sub(1)),
        Err(e) if e.raw_os_error() == Some(zmq::Error::EMFILE.to_raw()) => FileCount::NoneLeft,
        Err(_) => FileCount::Untold,
    }
}

/// Raises the process's soft open-file limit (`RLIMIT_NOFILE`) to its hard limit, and
/// returns the limit now in force: for a process about to hold many connections (a server
/// with thousands of callers holds a file for each). Many systems start processes at a
/// soft limit of 1,024 with a hard limit far above it; `zmqrpc-server` and `zmqrpc-proxy`
/// call this at start. It cannot pass the hard limit (that takes privileges: systemd's
/// `LimitNOFILE=`).
///
/// ```
/// let limit = zmqrpc_transport_std::raise_open_file_limit()?;
/// assert!(limit >= 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::increase_nofile_limit(hard)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;

    #[test]
    fn a_failure_to_open_a_file_names_the_open_file_limit() {
        let limit = LimitReached::of("bind");
        let LimitReached::OpenFiles { soft, hard, .. } = limit else {
            panic!("{limit:?}");
        };
        assert!(soft <= hard);
        let text = limit.to_string();
        assert!(
            text.contains("RLIMIT_NOFILE") && text.contains("ulimit -n"),
            "{text}"
        );
    }

    #[test]
    fn a_socket_refused_far_from_the_file_limit_is_the_contexts_limit() {
        // A test process holds a few dozen files at most, far below any soft limit.
        let limit = LimitReached::of("socket");
        assert_eq!(limit, LimitReached::ContextSockets { max: 1023 });
        assert!(limit.to_string().contains("ZMQ_MAX_SOCKETS"));
    }
}
