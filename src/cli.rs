//! What the binaries share: logging, signals, credentials and config files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use crate::transport::{Credentials, Shutdown, Users, UsersError};

/// The wire dialect the binaries serve and forward: native frames and, with the
/// `pyzmqrpc3` feature (on by default), pyzmqrpc3's messages on the same sockets, each
/// answered in the dialect it came in.
#[cfg(feature = "pyzmqrpc3")]
pub type WireDialect = crate::transport::dialect::Mixed;
/// The wire dialect the binaries serve and forward: native frames only (the `pyzmqrpc3`
/// feature is off).
#[cfg(not(feature = "pyzmqrpc3"))]
pub type WireDialect = crate::transport::Native;

/// The binaries' dialect, with the node agent's pyzmqrpc3 class names.
pub fn wire_dialect() -> WireDialect {
    #[cfg(feature = "pyzmqrpc3")]
    {
        crate::transport::dialect::Mixed::new(crate::agent::pyzmqrpc3_classes(
            crate::transport::dialect::Pyzmqrpc3::new(),
        ))
    }
    #[cfg(not(feature = "pyzmqrpc3"))]
    {
        crate::transport::Native
    }
}

/// A failure the binaries report and exit on.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// Logs to stderr at `info` (`-v`: debug, `-q`: warn); `RUST_LOG` overrides.
pub fn init_logging(verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp(None)
        .init();
}

/// Asks `shutdown` to stop on the first SIGINT or SIGTERM; exits at once on the second.
///
/// Keep the returned guard until the loop has returned, then drop it: it lets go of
/// `shutdown`, which holds a socket of the loop's ZeroMQ context. Only once every socket of a
/// context is gone is the context terminated, and only then do the closed sockets' messages
/// still queued (the answer to the last call, publications) get their linger to reach their
/// peers; a process that exits first drops them.
pub fn stop_on_signals(shutdown: Shutdown) -> std::io::Result<SignalGuard> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let shutdown = Arc::new(Mutex::new(Some(shutdown)));
    let handle = shutdown.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen > 1 {
                    log::warn!("signal {signal} again: exiting now");
                    std::process::exit(1);
                }
                log::info!("signal {signal}: stopping");
                if let Some(shutdown) = lock(&handle).as_ref() {
                    shutdown.request();
                }
            }
        })?;
    Ok(SignalGuard { shutdown })
}

/// Returned by [`stop_on_signals`]; dropping it releases the [`Shutdown`] handle (a second
/// signal still exits at once).
#[must_use = "dropping the guard at once makes the first signal stop nothing"]
pub struct SignalGuard {
    shutdown: Arc<Mutex<Option<Shutdown>>>,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        // Where the context's last socket goes, the context is terminated: this waits (at
        // most the sockets' linger) for queued messages to be sent.
        drop(lock(&self.shutdown).take());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Credentials from `file` (its first line, `user:password`; refused if group or others may
/// read it), or else from the environment variables `ZMQRPC_USER` and `ZMQRPC_PASSWORD`; none
/// if neither is there. Never from the command line, where other users of the machine could
/// read them. Only sockets that connect present them: the binaries never give them to a
/// bound socket.
pub fn credentials(file: Option<&Path>) -> Result<Option<Credentials>, CliError> {
    if let Some(file) = file {
        return match Credentials::from_file(file) {
            Ok(credentials) => Ok(Some(credentials)),
            Err(UsersError::BadLine { .. }) => {
                Err(format!("{}: first line is not `user:password`", file.display()).into())
            }
            Err(e) => Err(format!("credentials: {e}").into()),
        };
    }
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (var("ZMQRPC_USER"), var("ZMQRPC_PASSWORD")) {
        (Some(user), Some(password)) => Ok(Some(Credentials::new(user, password))),
        (None, None) => Ok(None),
        // Half of a pair is a mistake, not "no credentials": say so instead of connecting
        // without any.
        (Some(_), None) => Err("ZMQRPC_USER is set but ZMQRPC_PASSWORD is not".into()),
        (None, Some(_)) => Err("ZMQRPC_PASSWORD is set but ZMQRPC_USER is not".into()),
    }
}

/// The users file at `path`, if given (refused if group or others may read it). Only sockets
/// that bind verify them.
pub fn users(path: Option<&Path>) -> Result<Option<Users>, CliError> {
    path.map(Users::from_file)
        .transpose()
        .map_err(|e| format!("users: {e}").into())
}

/// A TOML config file.
pub fn load_config<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    basic_toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()).into())
}

/// The value of a flag as a path.
pub fn path(parser: &mut lexopt::Parser) -> Result<PathBuf, lexopt::Error> {
    Ok(PathBuf::from(parser.value()?))
}

/// The value of a flag as a string.
pub fn string(parser: &mut lexopt::Parser) -> Result<String, lexopt::Error> {
    lexopt::ValueExt::string(parser.value()?)
}

/// Whether a flag is one every binary understands; handles `-h`/`-V` by printing and exiting.
pub fn common_flag(arg: &lexopt::Arg<'_>, verbosity: &mut i8, help: &str) -> bool {
    use lexopt::Arg::{Long, Short};
    match arg {
        Short('h') | Long("help") => {
            print!("{help}");
            std::process::exit(0);
        }
        Short('V') | Long("version") => {
            println!("{}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0);
        }
        Short('v') | Long("verbose") => *verbosity += 1,
        Short('q') | Long("quiet") => *verbosity -= 1,
        _ => return false,
    }
    true
}
