//! `zmqrpc-server`: the node agent, and a client to query one; see `--help`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zmqrpc::agent::{self, Echo, GetNodeInfo};
use zmqrpc::cli::{self, CliError};
use zmqrpc::systemd::{self, Notifier};
use zmqrpc::transport::node::Ping;
use zmqrpc::transport::{KeyPair, RpcClient, RpcServer};

const HELP: &str = "\
zmqrpc-server: a node agent answering ping, info and echo over zmqrpc.

USAGE:
    zmqrpc-server [--bind ENDPOINT]... [OPTIONS]          serve
    zmqrpc-server call ping|info|echo TEXT --connect ENDPOINT [OPTIONS]
    zmqrpc-server keygen PATH/NAME                        make a CURVE key pair:
                           NAME.key (the pair, mode 600) and NAME.pub (to hand out)

SERVE OPTIONS:
    --bind ENDPOINT        serve calls on this REP endpoint (repeatable) [tcp://*:30000]
    --subscribe ENDPOINT   also take one-way commands from this publisher (repeatable)
    --users FILE           the bound endpoints accept only these users
                           (`user:password` lines; mode 600)
    --credentials FILE     the subscriptions present these to their publishers
                           (`user:password`; mode 600); without it, $ZMQRPC_USER
                           and $ZMQRPC_PASSWORD if set
    --permissions FILE     serve each caller only what it may call or notify: one
                           `USER ACTION PATTERN` rule a line, e.g. `ops any *`,
                           `* call zmqrpc.node.ping`; without it, every caller the
                           sockets let in may call everything
    --config FILE          read these settings from a TOML file (flags win), e.g.
                               bind = [\"tcp://*:30000\"]
                               users = \"/etc/zmqrpc/users\"

CURVE (instead of passwords; serve and call):
    --curve-key FILE       this node's key pair (NAME.key from keygen)
    --clients FILE         the bound endpoints let in only these client keys
                           (`user-id:<public key>` lines, the id services see)
    --server-key FILE      connect only to the server with this public key
                           (NAME.pub): subscriptions when serving, the agent for call

CALL OPTIONS:
    --connect ENDPOINT     the agent to ask, e.g. tcp://10.0.0.7:30000
    --timeout MS           give up after this long [3000]
    --credentials FILE     present these (`user:password`; mode 600); without it,
                           $ZMQRPC_USER and $ZMQRPC_PASSWORD if set

PROTECTION: a socket that binds verifies who connects (--users); a socket that
connects presents credentials (--credentials). Never the other way round: a
bound socket never presents a password. Files of secrets readable by group or
others are refused.

COMMON OPTIONS:
    -v, --verbose          log more (RUST_LOG overrides)
    -q, --quiet            log less
    -h, --help             print this help
    -V, --version          print the version

Serving stops cleanly on SIGINT or SIGTERM; it prints one line `ready bind=...`
to stdout once its sockets are bound. `call` exits 0 on an answer, 1 otherwise.
In a systemd Type=notify unit it says READY=1 then, feeds WatchdogSec= only while
its loop turns, and shows its counters in `systemctl status`.
";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    bind: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    users: Option<PathBuf>,
    credentials: Option<PathBuf>,
    curve_key: Option<PathBuf>,
    clients: Option<PathBuf>,
    server_key: Option<PathBuf>,
    permissions: Option<PathBuf>,
}

impl Settings {
    fn secret_files(&self) -> cli::SecretFiles {
        cli::SecretFiles {
            users: self.users.clone(),
            credentials: self.credentials.clone(),
            curve_key: self.curve_key.clone(),
            clients: self.clients.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

enum Mode {
    Serve(Settings),
    Call {
        command: Vec<String>,
        connect: String,
        timeout: Duration,
        secrets: cli::SecretFiles,
    },
    Keygen(PathBuf),
}

fn parse() -> Result<(Mode, i8), CliError> {
    use lexopt::prelude::*;
    let mut flags = Settings::default();
    let (mut config, mut connect, mut credentials) = (None, None, None);
    let mut timeout = Duration::from_secs(3);
    let mut words = Vec::new();
    let mut verbosity = 0;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        if cli::common_flag(&arg, &mut verbosity, HELP) {
            continue;
        }
        match arg {
            Long("bind") => flags.bind.push(cli::string(&mut parser)?),
            Long("subscribe") => flags.subscribe.push(cli::string(&mut parser)?),
            Long("users") => flags.users = Some(cli::path(&mut parser)?),
            Long("config") => config = Some(cli::path(&mut parser)?),
            Long("connect") => connect = Some(cli::string(&mut parser)?),
            Long("timeout") => timeout = Duration::from_millis(parser.value()?.parse()?),
            Long("credentials") => credentials = Some(cli::path(&mut parser)?),
            Long("curve-key") => flags.curve_key = Some(cli::path(&mut parser)?),
            Long("clients") => flags.clients = Some(cli::path(&mut parser)?),
            Long("server-key") => flags.server_key = Some(cli::path(&mut parser)?),
            Long("permissions") => flags.permissions = Some(cli::path(&mut parser)?),
            Value(word) => words.push(word.string()?),
            _ => return Err(format!("{}; try --help", arg.unexpected()).into()),
        }
    }
    if words.first().map(String::as_str) == Some("call") {
        let connect = connect.ok_or("call needs --connect ENDPOINT")?;
        let secrets = cli::SecretFiles {
            credentials,
            curve_key: flags.curve_key,
            server_key: flags.server_key,
            ..cli::SecretFiles::default()
        };
        return Ok((
            Mode::Call {
                command: words.split_off(1),
                connect,
                timeout,
                secrets,
            },
            verbosity,
        ));
    }
    if words.first().map(String::as_str) == Some("keygen") {
        return match &words[1..] {
            [base] => Ok((Mode::Keygen(PathBuf::from(base)), verbosity)),
            _ => Err("keygen needs one PATH/NAME (writes NAME.key and NAME.pub)".into()),
        };
    }
    if let Some(word) = words.first().filter(|w| *w != "serve") {
        return Err(format!("unknown command {word:?}; try --help").into());
    }
    let mut settings: Settings = match config {
        Some(path) => cli::load_config(&path)?,
        None => Settings::default(),
    };
    if !flags.bind.is_empty() {
        settings.bind = flags.bind;
    }
    if !flags.subscribe.is_empty() {
        settings.subscribe = flags.subscribe;
    }
    settings.users = flags.users.or(settings.users);
    settings.credentials = credentials.or(settings.credentials);
    settings.curve_key = flags.curve_key.or(settings.curve_key);
    settings.clients = flags.clients.or(settings.clients);
    settings.server_key = flags.server_key.or(settings.server_key);
    settings.permissions = flags.permissions.or(settings.permissions);
    if settings.bind.is_empty() && settings.subscribe.is_empty() {
        settings.bind.push("tcp://*:30000".into());
    }
    Ok((Mode::Serve(settings), verbosity))
}

fn serve(settings: Settings) -> Result<(), CliError> {
    let mut builder = agent::register(RpcServer::builder_for(cli::wire_dialect()))?;
    let subscribes = !settings.subscribe.is_empty();
    for endpoint in &settings.bind {
        builder = builder.rep(endpoint);
    }
    for endpoint in &settings.subscribe {
        builder = builder.subscribe(endpoint);
    }
    let protection = settings
        .secret_files()
        .protection(!settings.bind.is_empty(), subscribes)?;
    if let Some(users) = protection.users {
        builder = builder.users(users);
    }
    if let Some(credentials) = protection.credentials {
        builder = builder.credentials(credentials);
    }
    if let Some(permissions) = cli::permissions(settings.permissions.as_deref())? {
        builder = builder.permissions(permissions);
    }
    let server = builder.bind()?;
    let notifier = Notifier::from_env();
    let signals = cli::stop_on_signals(server.shutdown(), &notifier)?;
    let report = server.report();
    let bound = server.rep_endpoints().join(",");
    println!("ready bind={bound}");
    notifier.ready(&format!("serving bind={bound}"));
    let watched = report.clone();
    let watch = notifier.watch(server.shutdown().liveness(), move || {
        systemd::summary(watched.stats().counters())
    })?;
    server.run()?;
    drop(watch);
    // The sockets are closed: let the last answers out before exiting.
    drop(signals);
    log::info!("stopped: {}", systemd::summary(report.stats().counters()));
    Ok(())
}

/// Writes a new CURVE key pair to `base.key` (mode 600) and `base.pub`.
fn keygen(base: &Path) -> Result<(), CliError> {
    let pair = KeyPair::generate()?;
    let (secret, public) = pair
        .write_files(base)
        .map_err(|e| format!("cannot write {}.key and .pub: {e}", base.display()))?;
    println!("{}", pair.public);
    eprintln!(
        "wrote {} (keep it private) and {}",
        secret.display(),
        public.display()
    );
    Ok(())
}

fn call(
    command: &[String],
    connect: String,
    timeout: Duration,
    secrets: cli::SecretFiles,
) -> Result<(), CliError> {
    let mut builder = RpcClient::builder().req(connect).timeout(timeout);
    if let Some(credentials) = secrets.protection(false, true)?.credentials {
        builder = builder.credentials(credentials);
    }
    let mut client = builder.connect()?;
    match command {
        [c] if c == "ping" => {
            let pong = client.call(&Ping)?;
            println!(
                "pong: {} {}, up {} s",
                pong.role,
                pong.version,
                pong.uptime_ms / 1000
            );
        }
        [c] if c == "info" => {
            let info = client.call(&GetNodeInfo)?;
            let or = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            println!("hostname     {}", or(info.hostname));
            println!(
                "uptime       {}",
                or(info.uptime_secs.map(|s| format!("{s} s")))
            );
            println!(
                "load         {}",
                or(info.load.map(|l| format!("{} {} {}", l[0], l[1], l[2])))
            );
            println!(
                "memory       {}",
                or(info.mem_total_kib.map(|t| format!("{t} KiB total")))
            );
            println!(
                "available    {}",
                or(info.mem_available_kib.map(|a| format!("{a} KiB")))
            );
            println!(
                "cpu temp     {}",
                or(info.cpu_temp_c.map(|c| format!("{c:.1} °C")))
            );
        }
        [c, text @ ..] if c == "echo" && !text.is_empty() => {
            println!("{}", client.call(&Echo(text.join(" ")))?);
        }
        _ => return Err("call what? ping, info or echo TEXT; try --help".into()),
    }
    Ok(())
}

fn main() {
    let result = parse().and_then(|(mode, verbosity)| {
        cli::init_logging(verbosity);
        match mode {
            Mode::Serve(settings) => serve(settings),
            Mode::Call {
                command,
                connect,
                timeout,
                secrets,
            } => call(&command, connect, timeout, secrets),
            Mode::Keygen(base) => keygen(&base),
        }
    });
    if let Err(e) = result {
        eprintln!("zmqrpc-server: {e}");
        std::process::exit(1);
    }
}
