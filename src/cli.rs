//! What the binaries share: logging, signals, credentials and config files. Not part of
//! zmqrpc's API (hidden from its docs, outside semver): the binaries are crates of their
//! own, so what they share has to be public somewhere.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use crate::systemd::Notifier;
use crate::transport::auth::Permissions;
use crate::transport::{Credentials, KeyPair, PublicKey, Shutdown, Users, UsersError};

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

/// Raises the process's soft open-file limit to its hard one (a node holds a file per
/// connection: thousands of callers need more than the 1,024 many systems start with), and
/// logs the limit in force; a node that cannot raise it says so and serves within it.
pub fn raise_open_file_limit() {
    match crate::transport::raise_open_file_limit() {
        Ok(limit) => log::debug!("open-file limit (RLIMIT_NOFILE): {limit}"),
        Err(e) => log::warn!("open-file limit (RLIMIT_NOFILE) not raised: {e}"),
    }
}

/// Asks `shutdown` to stop on the first SIGINT or SIGTERM (telling `notifier`'s service
/// manager `STOPPING=1`); exits at once on the second.
///
/// Keep the returned guard until the loop has returned, then drop it: it lets go of
/// `shutdown`, which holds a socket of the loop's ZeroMQ context. Only once every socket of a
/// context is gone is the context terminated, and only then do the closed sockets' messages
/// still queued (the answer to the last call, publications) get their linger to reach their
/// peers; a process that exits first drops them.
pub fn stop_on_signals(shutdown: Shutdown, notifier: &Notifier) -> std::io::Result<SignalGuard> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let shutdown = Arc::new(Mutex::new(Some(shutdown)));
    let handle = shutdown.clone();
    let notifier = notifier.clone();
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
                // After the stop is asked: a service manager slow to read holds up no stop.
                notifier.stopping();
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

/// The files of secrets a binary was given (flags or config), by what they protect: bound
/// sockets verify `users` (PLAIN) or `clients` (CURVE), connecting sockets present
/// `credentials` (PLAIN) or prove themselves to `server_key` (CURVE); `curve_key` is the
/// node's own key pair for CURVE on either side.
#[derive(Debug, Default, Clone)]
pub struct SecretFiles {
    /// `--users`: `user:password` lines.
    pub users: Option<PathBuf>,
    /// `--credentials`: a `user:password` line.
    pub credentials: Option<PathBuf>,
    /// `--curve-key`: the node's key pair (`zmqrpc-server keygen`).
    pub curve_key: Option<PathBuf>,
    /// `--clients`: `user-id:<public key>` lines, the clients a CURVE socket lets in.
    pub clients: Option<PathBuf>,
    /// `--server-key`: the public key file of the server the connecting sockets pin.
    pub server_key: Option<PathBuf>,
}

/// What a node's sockets use: `users` for those that bind, `credentials` for those that
/// connect.
#[derive(Debug, Default)]
pub struct Protection {
    /// Verified by every socket that binds.
    pub users: Option<Users>,
    /// Presented by every socket that connects.
    pub credentials: Option<Credentials>,
}

impl SecretFiles {
    /// Reads the files for a node whose sockets bind (`binds`) and connect (`connects`),
    /// refusing a file no socket would use, two mechanisms for one side, and half a CURVE
    /// configuration. The environment's credentials (`$ZMQRPC_USER`, `$ZMQRPC_PASSWORD`) go
    /// to the connecting sockets, when no file says otherwise.
    pub fn protection(&self, binds: bool, connects: bool) -> Result<Protection, CliError> {
        let given = |flag: &str, file: &Option<PathBuf>, used: bool, verb: &str| match (file, used)
        {
            (Some(_), false) => Err(format!(
                "{flag}: no socket here {verb} (bound sockets verify --users or \
                     --clients; connecting ones present --credentials or --server-key)"
            )),
            _ => Ok(()),
        };
        given("--users", &self.users, binds, "binds")?;
        given("--clients", &self.clients, binds, "binds")?;
        given("--credentials", &self.credentials, connects, "connects")?;
        given("--server-key", &self.server_key, connects, "connects")?;
        if self.users.is_some() && self.clients.is_some() {
            return Err("--users and --clients: one mechanism for the bound sockets".into());
        }
        if self.credentials.is_some() && self.server_key.is_some() {
            return Err("--credentials and --server-key: one mechanism for connecting".into());
        }
        let keys = match &self.curve_key {
            Some(path) => {
                if self.clients.is_none() && self.server_key.is_none() {
                    return Err("--curve-key needs --clients (for the sockets that bind) \
                                or --server-key (for those that connect)"
                        .into());
                }
                Some(KeyPair::from_file(path).map_err(|e| format!("--curve-key: {e}"))?)
            }
            None if self.clients.is_some() || self.server_key.is_some() => {
                return Err(
                    "--clients and --server-key need --curve-key, the node's own \
                            key pair (zmqrpc-server keygen)"
                        .into(),
                )
            }
            None => None,
        };
        let users = match (&self.clients, &keys) {
            (Some(clients), Some(keys)) => Some(
                Users::curve(keys.clone())
                    .with_keys_file(clients)
                    .map_err(|e| format!("--clients: {e}"))?,
            ),
            _ => users(self.users.as_deref())?,
        };
        let credentials = match (&self.server_key, &keys, connects) {
            (Some(server), Some(keys), _) => {
                let server =
                    PublicKey::from_file(server).map_err(|e| format!("--server-key: {e}"))?;
                Some(Credentials::curve(keys.clone(), server))
            }
            (_, _, true) => credentials(self.credentials.as_deref())?,
            _ => None,
        };
        Ok(Protection { users, credentials })
    }
}

/// The permissions file at `path`, if given: one `USER ACTION PATTERN` rule a line (see
/// [`Permissions::parse`]).
pub fn permissions(path: Option<&Path>) -> Result<Option<Permissions>, CliError> {
    path.map(Permissions::from_file)
        .transpose()
        .map_err(|e| format!("permissions: {e}").into())
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

/// The metrics exporter at `addr`, if one was asked for (`--metrics`), serving `report`.
pub fn metrics(
    addr: Option<&str>,
    report: &crate::transport::node::NodeReport,
) -> Result<Option<crate::metrics::Exporter>, CliError> {
    addr.map(|addr| {
        crate::metrics::Exporter::bind(addr, report.clone())
            .map_err(|e| format!("--metrics {addr}: {e}").into())
    })
    .transpose()
}

/// Where and how a binary announces itself (`--announce`, `--announce-every`, `--name`; in
/// a config file `announce`, `announce_every_ms`, `name`).
#[derive(Debug, Default, Clone)]
pub struct Announcing {
    /// The rosters to announce to.
    pub announce: Vec<String>,
    /// How often, in milliseconds.
    pub announce_every_ms: Option<u64>,
    /// The node's name in the fleet (default: `HOSTNAME/ROLE`).
    pub name: Option<String>,
}

impl Announcing {
    /// The flag `arg` is, if it is one of these (`--announce`, `--announce-every`,
    /// `--name`), for [`take`](Self::take).
    pub fn flag(arg: &lexopt::Arg<'_>) -> Option<&'static str> {
        match arg {
            lexopt::Arg::Long(long) => ["announce", "announce-every", "name"]
                .into_iter()
                .find(|flag| flag == long),
            _ => None,
        }
    }

    /// Takes the value of `flag` (one [`flag`](Self::flag) named).
    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        match flag {
            "announce" => self.announce.push(string(parser)?),
            "announce-every" => {
                self.announce_every_ms = Some(lexopt::ValueExt::parse(&parser.value()?)?);
            }
            _ => self.name = Some(string(parser)?),
        }
        Ok(())
    }

    /// These flags over `config`'s.
    pub fn or(self, config: Announcing) -> Announcing {
        Announcing {
            announce: match self.announce.is_empty() {
                true => config.announce,
                false => self.announce,
            },
            announce_every_ms: self.announce_every_ms.or(config.announce_every_ms),
            name: self.name.or(config.name),
        }
    }

    /// Whether the node announces.
    pub fn announces(&self) -> bool {
        !self.announce.is_empty()
    }

    /// Starts announcing a node of `role` reached at `endpoints`, presenting `credentials`,
    /// if any roster was given.
    pub fn start(
        &self,
        role: &str,
        endpoints: Vec<String>,
        credentials: Option<Credentials>,
    ) -> Result<Option<crate::transport::presence::Announcer>, CliError> {
        use crate::transport::presence::{Announcer, Presence};
        if self.announce.is_empty() {
            return Ok(None);
        }
        let name = match &self.name {
            Some(name) => name.clone(),
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "node".to_owned());
                format!("{host}/{role}")
            }
        };
        let mut builder = Announcer::builder(Presence::new(name, role, endpoints));
        for roster in &self.announce {
            builder = builder.to(roster);
        }
        if let Some(ms) = self.announce_every_ms {
            builder = builder.every(std::time::Duration::from_millis(ms));
        }
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        builder
            .start()
            .map(Some)
            .map_err(|e| format!("--announce: {e}").into())
    }
}
