//! `zmqrpc-server`: the node agent, and a client to query one; see `--help`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use zmqrpc::agent::{self, GetNodeInfo, NodeInfo};
use zmqrpc::cli::{self, CliError};
use zmqrpc::fleet::{self, Access, Node, Reply, Request};
use zmqrpc::systemd::{self, Notifier};
use zmqrpc::transport::auth::PublicKey;
use zmqrpc::transport::presence::{GetRoster, Roster, RosterView};
use zmqrpc::transport::{KeyPair, RpcServer, SocketOptions};
use zmqrpc::Command;

const HELP: &str = "\
zmqrpc-server: a node agent answering info and echo (and, as every zmqrpc node,
ping, stats and describe) over zmqrpc; and a command line for a whole fleet.

USAGE:
    zmqrpc-server [--bind ENDPOINT]... [OPTIONS]          serve
    zmqrpc-server call COMMAND [ARGS] --connect ENDPOINT... [OPTIONS]
    zmqrpc-server call COMMAND [ARGS] --fleet FILE [OPTIONS]
    zmqrpc-server keygen PATH/NAME                        make a CURVE key pair:
                           NAME.key (the pair, mode 600) and NAME.pub (to hand out)

COMMANDS (call):
    ping, stats, describe  what every node answers about itself (any node kind:
                           server, proxy, buffered proxy, bridge)
    roster                 who a roster (--roster) has heard of: up, since when,
                           last heard
    info, echo TEXT        the agent's own
    NAME [JSON]            any command a node describes, by name, its arguments as
                           JSON, e.g. `call sensor.read '{\"sensor\": 3}'`

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
    --metrics ADDRESS      serve the counters for Prometheus at http://ADDRESS/metrics
                           (e.g. 127.0.0.1:9100; no authentication: keep it on
                           loopback or a management network)
    --peers N              the callers and publishers expected at once: with more
                           than 250, ZMTP pings are slowed to 250 a second in all
                           (libzmq's cost per ping grows with its peers) [100]
    --roster               also keep the fleet's roster: take announcements
                           (zmqrpc.presence.announce) and answer who is up
                           (zmqrpc.presence.roster; `call roster`)
    --roster-max N         the roster keeps at most N nodes [1024]
    --announce ENDPOINT    tell the roster there that this node is alive
                           (repeatable: used in turn), presenting --credentials
    --announce-every MS    how often [5000]; the roster counts a node down after
                           three silent intervals, at once when it stops cleanly
    --name NAME            the node's name in the roster [HOSTNAME/server]
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
    --connect ENDPOINT     a node to ask, e.g. tcp://10.0.0.7:30000 (repeatable)
    --fleet FILE           the nodes to ask, one a line: `[NAME] ENDPOINT
                           [PUBLIC-KEY-FILE]` (the key: a CURVE node's own)
    --timeout MS           the one deadline for every node [3000]
    --parallel N           nodes asked at once, at most [256]
    --json                 print the outcomes as JSON, one object a node
    --progress             show progress on stderr (on when it is a terminal
                           and more than one node is asked)
    --credentials FILE     present these (`user:password`; mode 600); without it,
                           $ZMQRPC_USER and $ZMQRPC_PASSWORD if set
    With one --connect, the answer is printed alone; with several nodes, a table
    (NODE STATUS TIME ANSWER) and a last line of how many answered.

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
to stdout once its sockets are bound. `call` exits with the number of nodes
that failed (0: every node answered; at most 100), or 125 if it could not start
(a bad flag, argument or file).
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
    metrics: Option<String>,
    #[serde(default)]
    roster: bool,
    roster_max: Option<usize>,
    #[serde(default)]
    announce: Vec<String>,
    announce_every_ms: Option<u64>,
    name: Option<String>,
    /// The peers expected at once (`SocketOptions::for_peers`).
    peers: Option<usize>,
}

impl Settings {
    /// Where the node announces itself.
    fn announcing(&self) -> cli::Announcing {
        cli::Announcing {
            announce: self.announce.clone(),
            announce_every_ms: self.announce_every_ms,
            name: self.name.clone(),
        }
    }
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

/// What `call` was asked.
struct Calling {
    command: Vec<String>,
    connect: Vec<String>,
    fleet: Option<PathBuf>,
    timeout: Duration,
    parallel: usize,
    json: bool,
    progress: bool,
    secrets: cli::SecretFiles,
}

enum Mode {
    Serve(Settings),
    Call(Calling),
    Keygen(PathBuf),
}

fn parse() -> Result<(Mode, i8), CliError> {
    use lexopt::prelude::*;
    let mut flags = Settings::default();
    let (mut config, mut connect, mut credentials) = (None, Vec::new(), None);
    let (mut fleet, mut parallel, mut json, mut progress) = (None, 256, false, false);
    let mut timeout = Duration::from_secs(3);
    let mut announcing = cli::Announcing::default();
    let mut words = Vec::new();
    let mut verbosity = 0;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        if cli::common_flag(&arg, &mut verbosity, HELP) {
            continue;
        }
        if let Some(flag) = cli::Announcing::flag(&arg) {
            announcing.take(flag, &mut parser)?;
            continue;
        }
        match arg {
            Long("bind") => flags.bind.push(cli::string(&mut parser)?),
            Long("subscribe") => flags.subscribe.push(cli::string(&mut parser)?),
            Long("users") => flags.users = Some(cli::path(&mut parser)?),
            Long("config") => config = Some(cli::path(&mut parser)?),
            Long("connect") => connect.push(cli::string(&mut parser)?),
            Long("fleet") => fleet = Some(cli::path(&mut parser)?),
            Long("parallel") => parallel = parser.value()?.parse()?,
            Long("json") => json = true,
            Long("progress") => progress = true,
            Long("timeout") => timeout = Duration::from_millis(parser.value()?.parse()?),
            Long("credentials") => credentials = Some(cli::path(&mut parser)?),
            Long("curve-key") => flags.curve_key = Some(cli::path(&mut parser)?),
            Long("clients") => flags.clients = Some(cli::path(&mut parser)?),
            Long("server-key") => flags.server_key = Some(cli::path(&mut parser)?),
            Long("permissions") => flags.permissions = Some(cli::path(&mut parser)?),
            Long("metrics") => flags.metrics = Some(cli::string(&mut parser)?),
            Long("peers") => flags.peers = Some(parser.value()?.parse()?),
            Long("roster") => flags.roster = true,
            Long("roster-max") => flags.roster_max = Some(parser.value()?.parse()?),
            Value(word) => words.push(word.string()?),
            _ => return Err(format!("{}; try --help", arg.unexpected()).into()),
        }
    }
    if words.first().map(String::as_str) == Some("call") {
        if connect.is_empty() && fleet.is_none() {
            return Err("call needs --connect ENDPOINT or --fleet FILE".into());
        }
        if parallel == 0 {
            return Err("--parallel must be at least 1".into());
        }
        let secrets = cli::SecretFiles {
            credentials,
            curve_key: flags.curve_key,
            server_key: flags.server_key,
            ..cli::SecretFiles::default()
        };
        let calling = Calling {
            command: words.split_off(1),
            connect,
            fleet,
            timeout,
            parallel,
            json,
            progress,
            secrets,
        };
        return Ok((Mode::Call(calling), verbosity));
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
    settings.metrics = flags.metrics.or(settings.metrics);
    settings.peers = flags.peers.or(settings.peers);
    settings.roster |= flags.roster;
    settings.roster_max = flags.roster_max.or(settings.roster_max);
    let announcing = announcing.or(settings.announcing());
    settings.announce = announcing.announce;
    settings.announce_every_ms = announcing.announce_every_ms;
    settings.name = announcing.name;
    if settings.bind.is_empty() && settings.subscribe.is_empty() {
        settings.bind.push("tcp://*:30000".into());
    }
    Ok((Mode::Serve(settings), verbosity))
}

fn serve(settings: Settings) -> Result<(), CliError> {
    cli::raise_open_file_limit();
    let mut builder = agent::register(RpcServer::builder_for(cli::wire_dialect()))?;
    if let Some(peers) = settings.peers {
        builder = builder.options(SocketOptions::default().for_peers(peers));
    }
    let subscribes = !settings.subscribe.is_empty();
    for endpoint in &settings.bind {
        builder = builder.rep(endpoint);
    }
    for endpoint in &settings.subscribe {
        builder = builder.subscribe(endpoint);
    }
    if settings.roster {
        let max = settings.roster_max.unwrap_or(1024);
        builder = Roster::new(max).register(builder)?.0;
    }
    let announcing = settings.announcing();
    let announces = announcing.announces();
    let protection = settings
        .secret_files()
        .protection(!settings.bind.is_empty(), subscribes || announces)?;
    if let Some(users) = protection.users {
        builder = builder.users(users);
    }
    if let (Some(credentials), true) = (&protection.credentials, subscribes) {
        builder = builder.credentials(credentials.clone());
    }
    if let Some(permissions) = cli::permissions(settings.permissions.as_deref())? {
        builder = builder.permissions(permissions);
    }
    let server = builder.bind()?;
    let notifier = Notifier::from_env();
    let signals = cli::stop_on_signals(server.shutdown(), &notifier)?;
    let report = server.report();
    let bound = server.rep_endpoints().join(",");
    let exporter = cli::metrics(settings.metrics.as_deref(), &report)?;
    match &exporter {
        Some(exporter) => println!("ready bind={bound} metrics={}", exporter.local_addr()),
        None => println!("ready bind={bound}"),
    }
    notifier.ready(&format!("serving bind={bound}"));
    let announcer = announcing.start(
        "server",
        server.rep_endpoints().to_vec(),
        protection.credentials,
    )?;
    let watched = report.clone();
    let watch = notifier.watch(server.shutdown().liveness(), move || {
        systemd::summary(watched.stats().counters())
    })?;
    server.run()?;
    // The roster hears that the node is leaving.
    drop(announcer);
    drop(watch);
    drop(exporter);
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

/// The request `words` name: a built-in, an agent command, or any command by name with
/// its arguments as JSON.
fn request(words: &[String]) -> Result<Request, CliError> {
    let json = |name: &str, args: &[String]| -> Result<Request, CliError> {
        let args = match args {
            [] => Value::Null,
            [json] => serde_json::from_str(json)
                .map_err(|e| format!("the arguments of {name} are not JSON: {e}"))?,
            _ => return Err(format!("{name} takes one JSON argument; quote it").into()),
        };
        Ok(Request::Named {
            name: name.to_owned(),
            args,
        })
    };
    match words {
        [] => Err(
            "call what? ping, stats, describe, info, echo TEXT or a command's name; \
                   try --help"
                .into(),
        ),
        [c] if c == "ping" || c == zmqrpc::transport::node::Ping::NAME => Ok(Request::Ping),
        [c] if c == "stats" || c == zmqrpc::transport::node::GetStats::NAME => Ok(Request::Stats),
        [c] if c == "describe" || c == zmqrpc::transport::node::Describe::NAME => {
            Ok(Request::Describe)
        }
        [c] if c == "info" || c == GetNodeInfo::NAME => Ok(Request::Info),
        [c] if c == "roster" || c == GetRoster::NAME => Ok(Request::Roster),
        [c, text @ ..] if c == "echo" => Ok(Request::Echo(text.join(" "))),
        [name, args @ ..] => json(name, args),
    }
}

/// How `call` reaches the nodes, from its files of secrets: a CURVE key pair (each node's
/// key from the fleet file, or --server-key), or PLAIN credentials.
fn access(secrets: &cli::SecretFiles) -> Result<Access, CliError> {
    let Some(keys) = &secrets.curve_key else {
        let protection = secrets.protection(false, true)?;
        return Ok(Access {
            plain: protection.credentials,
            ..Access::default()
        });
    };
    if secrets.credentials.is_some() {
        return Err("--credentials and --curve-key: one mechanism for connecting".into());
    }
    let server_key = secrets
        .server_key
        .as_ref()
        .map(PublicKey::from_file)
        .transpose()
        .map_err(|e| format!("--server-key: {e}"))?;
    Ok(Access {
        plain: None,
        curve_keys: Some(KeyPair::from_file(keys).map_err(|e| format!("--curve-key: {e}"))?),
        server_key,
    })
}

/// Calls the command on every node; the number that failed.
fn call(calling: Calling) -> Result<usize, CliError> {
    use std::io::{IsTerminal, Write};
    let request = request(&calling.command)?;
    let access = access(&calling.secrets)?;
    let mut nodes: Vec<Node> = calling.connect.iter().map(|e| Node::at(e)).collect();
    if let Some(path) = &calling.fleet {
        nodes.extend(fleet::read_fleet(path)?);
    }
    let alone = nodes.len() == 1 && calling.fleet.is_none() && !calling.json;
    let show = calling.progress || (nodes.len() > 1 && std::io::stderr().is_terminal());
    let mut last_shown = std::time::Instant::now();
    let outcomes = fleet::fan_out(
        &nodes,
        &request,
        &access,
        calling.timeout,
        calling.parallel,
        |progress| {
            if show && last_shown.elapsed() >= Duration::from_millis(100) {
                last_shown = std::time::Instant::now();
                let mut stderr = std::io::stderr();
                let _ = writeln!(
                    stderr,
                    "progress: {}/{} answered, {} failed",
                    progress.answered, progress.nodes, progress.failed
                );
            }
        },
    );
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if alone {
        let outcome = outcomes.into_iter().next().ok_or("no outcome")?;
        return match outcome.result {
            Ok(reply) => {
                print_alone(&request, &reply);
                Ok(0)
            }
            Err(failure) => {
                eprintln!("zmqrpc-server: {failure}");
                Ok(1)
            }
        };
    }
    if calling.json {
        let text = serde_json::to_string_pretty(&fleet::json(&nodes, &outcomes))
            .map_err(|e| format!("cannot write JSON: {e}"))?;
        println!("{text}");
    } else {
        print!("{}", fleet::table(&nodes, &request, &outcomes));
    }
    Ok(failed)
}

/// One node's answer, printed as the agent's commands always were.
fn print_alone(request: &Request, reply: &Reply) {
    let value = match reply {
        Reply::Accepted => return println!("accepted (no answer comes back)"),
        Reply::Value(value) => value,
    };
    match request {
        Request::Ping => println!("pong: {}", fleet::summary(request, reply)),
        Request::Echo(_) => println!("{}", value.as_str().unwrap_or_default()),
        Request::Roster => match serde_json::from_value::<RosterView>(value.clone()) {
            Ok(roster) => print_roster(&roster),
            Err(_) => println!("{value}"),
        },
        Request::Info => match serde_json::from_value::<NodeInfo>(value.clone()) {
            Ok(info) => print_info(info),
            Err(_) => println!("{value}"),
        },
        _ => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        ),
    }
}

fn print_roster(roster: &RosterView) {
    let header = ["NAME", "ROLE", "STATE", "FOR", "LAST HEARD", "ENDPOINTS"].map(str::to_owned);
    let rows: Vec<[String; 6]> = roster
        .members
        .iter()
        .map(|member| {
            [
                member.name.clone(),
                member.role.clone(),
                if member.up { "up" } else { "down" }.to_owned(),
                format!("{} s", member.for_ms / 1000),
                format!("{} s ago", member.last_heard_ms / 1000),
                member.endpoints.join(","),
            ]
        })
        .collect();
    let width = |column: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        line.push_str(&row[5]);
        println!("{line}");
    }
    if roster.refused > 0 {
        println!(
            "({} announcements refused: the roster was full)",
            roster.refused
        );
    }
}

fn print_info(info: NodeInfo) {
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

fn main() {
    let calling = std::env::args().nth(1).is_some_and(|word| word == "call");
    let result = parse().and_then(|(mode, verbosity)| {
        cli::init_logging(verbosity);
        match mode {
            Mode::Serve(settings) => serve(settings).map(|()| 0),
            Mode::Call(calling) => call(calling),
            Mode::Keygen(base) => keygen(&base).map(|()| 0),
        }
    });
    match result {
        // `call`: how many nodes failed, said in the exit status (at most 100).
        Ok(failed) => std::process::exit(failed.min(100) as i32),
        Err(e) => {
            eprintln!("zmqrpc-server: {e}");
            std::process::exit(if calling { 125 } else { 1 });
        }
    }
}
