//! `zmqrpc-proxy`: forwards zmqrpc frames between sockets; see `--help`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zmqrpc::cli::{self, CliError};
use zmqrpc::systemd::{self, Notifier};
use zmqrpc::transport::auth::Permissions;
#[cfg(feature = "serial")]
use zmqrpc::transport::bridge::SerialBridge;
use zmqrpc::transport::{BufferedProxy, Credentials, Proxy, ProxyKind, Users};

const HELP: &str = "\
zmqrpc-proxy: forwards zmqrpc frames from one socket to another, or to a serial device.

USAGE:
    zmqrpc-proxy --kind KIND --in ENDPOINT --out ENDPOINT [OPTIONS]
    zmqrpc-proxy --kind rep2serial --device PATH --in ENDPOINT [--out ENDPOINT] [OPTIONS]
    zmqrpc-proxy --config FILE [OPTIONS]

KINDS:
    rep2req     calls in (REP, bound), forwarded to a server (REQ), answers returned
    buffered    like rep2req, but each call is accepted once queued (and spooled),
                then delivered in order, retried until the server answers; the
                caller gets no response (docs/proxies.md: what a caller gets)
    rep2pub     calls in (REP, bound), published (PUB, bound), accepted at once
    sub2req     publications in (SUB, connects), forwarded to a server (REQ)
    sub2pub     publications in (SUB, connects), published again (PUB, bound)
    rep2serial  calls in (REP, bound), carried to a microcontroller on a serial port
                (--device) and answered by it; its notifications published (--out,
                PUB, bound; optional). A missing device is reopened with backoff
                while callers get `Unavailable` errors. Native frames only: a
                pyzmqrpc3 message is refused with `BadFrame`

OPTIONS:
    --in ENDPOINT          input endpoint (repeatable), e.g. tcp://*:30000
    --out ENDPOINT         output endpoint (repeatable), e.g. tcp://10.0.0.2:30001
    --control ENDPOINT     sub2req, sub2pub: a REP endpoint (bound, repeatable) on
                           which the proxy answers the built-in commands (ping,
                           stats, describe) that its SUB input cannot; other
                           kinds answer them on --in
    --timeout MS           wait for each downstream answer at most this long
                           [5000; rep2serial: 1000]
    --concurrency N        rep2req: calls forwarded at once, each on its own
                           connection with its own timeout [16]
    --device PATH          rep2serial: the serial device, e.g. /dev/ttyACM0
    --baud N               rep2serial: the line speed [115200]
    --device-frame-max N   rep2serial: the largest frame the device takes, header
                           included (its buffer); larger calls get TooLarge at once
                           [1024, the most]
    --users FILE           every bound side (REP input, PUB output) accepts only
                           these users (`user:password` lines; mode 600)
    --credentials FILE     every connecting side (SUB input, REQ output) presents
                           these (`user:password`; mode 600); without it,
                           $ZMQRPC_USER and $ZMQRPC_PASSWORD if set
    --curve-key FILE       CURVE: this node's key pair (`zmqrpc-server keygen`)
    --clients FILE         CURVE: every bound side lets in only these client keys
                           (`user-id:<public key>` lines), instead of --users
    --server-key FILE      CURVE: every connecting side talks only to the server
                           with this public key, instead of --credentials
    --permissions FILE     forward from the input only what each caller may call
                           or notify: `USER ACTION PATTERN` lines (a proxy sees
                           command keys: patterns are exact names, or `*`)
    --capacity N           buffered: requests held at most [1000]
    --spool FILE           buffered: keep requests in FILE too, so a restart loses nothing
    --spool-max BYTES      buffered: the spool's size bound [67108864]
    --metrics ADDRESS      serve the counters for Prometheus at http://ADDRESS/metrics
                           (e.g. 127.0.0.1:9100; no authentication: keep it on
                           loopback or a management network)
    --announce ENDPOINT    tell a roster (zmqrpc-server --roster) that this node is
                           alive (repeatable: used in turn), presenting what the
                           connecting sides present (--credentials, --server-key)
    --announce-every MS    how often [5000]; the roster counts a node down after
                           three silent intervals, at once when it stops cleanly
    --name NAME            the node's name in the roster [HOSTNAME/KIND]
    --config FILE          read these settings from a TOML file (flags win), e.g.
                               kind = \"buffered\"
                               in = [\"tcp://*:30000\"]
                               out = [\"tcp://10.0.0.2:30001\"]
                               spool = \"/var/lib/zmqrpc/spool\"
    -v, --verbose          log more (RUST_LOG overrides)
    -q, --quiet            log less
    -h, --help             print this help
    -V, --version          print the version

PROTECTION: a socket that binds verifies who connects (--users); a socket that
connects presents credentials (--credentials). Never the other way round: a
bound socket never presents a password. --users for a kind with no bound side,
or --credentials for one with no connecting side, is refused; files of secrets
readable by group or others are refused.

Stops cleanly on SIGINT or SIGTERM (the spool is synced); prints one line
`ready in=... out=...` to stdout once its sockets are bound: every endpoint of
each side, bound (wildcard ports resolved) or connected. In a systemd Type=notify
unit it says READY=1 then, feeds WatchdogSec= only while its loop turns, and
shows its counters in `systemctl status`. The ready line adds `control=...` and
`metrics=...` when those are given.
";

/// Settings, from a config file and then flags.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    kind: Option<String>,
    #[serde(rename = "in", default)]
    input: Vec<String>,
    #[serde(rename = "out", default)]
    output: Vec<String>,
    #[serde(default)]
    control: Vec<String>,
    timeout_ms: Option<u64>,
    concurrency: Option<usize>,
    users: Option<PathBuf>,
    credentials: Option<PathBuf>,
    curve_key: Option<PathBuf>,
    clients: Option<PathBuf>,
    server_key: Option<PathBuf>,
    permissions: Option<PathBuf>,
    capacity: Option<usize>,
    spool: Option<PathBuf>,
    spool_max: Option<u64>,
    device: Option<PathBuf>,
    baud: Option<u32>,
    device_frame_max: Option<usize>,
    metrics: Option<String>,
    #[serde(default)]
    announce: Vec<String>,
    announce_every_ms: Option<u64>,
    name: Option<String>,
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

    /// What its connecting sockets present, for the roster too.
    fn connecting_credentials(&self) -> Result<Option<Credentials>, CliError> {
        let files = cli::SecretFiles {
            credentials: self.credentials.clone(),
            curve_key: self.server_key.as_ref().and(self.curve_key.clone()),
            server_key: self.server_key.clone(),
            ..cli::SecretFiles::default()
        };
        Ok(files.protection(false, true)?.credentials)
    }
}

fn parse() -> Result<(Settings, i8), CliError> {
    use lexopt::prelude::*;
    let mut flags = Settings::default();
    let mut config = None;
    let mut verbosity = 0;
    let mut announcing = cli::Announcing::default();
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
            Long("kind") => flags.kind = Some(cli::string(&mut parser)?),
            Long("in") => flags.input.push(cli::string(&mut parser)?),
            Long("out") => flags.output.push(cli::string(&mut parser)?),
            Long("control") => flags.control.push(cli::string(&mut parser)?),
            Long("timeout") => flags.timeout_ms = Some(parser.value()?.parse()?),
            Long("concurrency") => flags.concurrency = Some(parser.value()?.parse()?),
            Long("users") => flags.users = Some(cli::path(&mut parser)?),
            Long("credentials") => flags.credentials = Some(cli::path(&mut parser)?),
            Long("curve-key") => flags.curve_key = Some(cli::path(&mut parser)?),
            Long("clients") => flags.clients = Some(cli::path(&mut parser)?),
            Long("server-key") => flags.server_key = Some(cli::path(&mut parser)?),
            Long("permissions") => flags.permissions = Some(cli::path(&mut parser)?),
            Long("capacity") => flags.capacity = Some(parser.value()?.parse()?),
            Long("spool") => flags.spool = Some(cli::path(&mut parser)?),
            Long("spool-max") => flags.spool_max = Some(parser.value()?.parse()?),
            Long("device") => flags.device = Some(cli::path(&mut parser)?),
            Long("baud") => flags.baud = Some(parser.value()?.parse()?),
            Long("device-frame-max") => {
                flags.device_frame_max = Some(parser.value()?.parse()?);
            }
            Long("metrics") => flags.metrics = Some(cli::string(&mut parser)?),
            Long("config") => config = Some(cli::path(&mut parser)?),
            _ => return Err(format!("{}; try --help", arg.unexpected()).into()),
        }
    }
    let mut settings: Settings = match config {
        Some(path) => cli::load_config(&path)?,
        None => Settings::default(),
    };
    // Flags win over the file.
    settings.kind = flags.kind.or(settings.kind);
    if !flags.input.is_empty() {
        settings.input = flags.input;
    }
    if !flags.output.is_empty() {
        settings.output = flags.output;
    }
    if !flags.control.is_empty() {
        settings.control = flags.control;
    }
    settings.timeout_ms = flags.timeout_ms.or(settings.timeout_ms);
    settings.concurrency = flags.concurrency.or(settings.concurrency);
    settings.users = flags.users.or(settings.users);
    settings.credentials = flags.credentials.or(settings.credentials);
    settings.curve_key = flags.curve_key.or(settings.curve_key);
    settings.clients = flags.clients.or(settings.clients);
    settings.server_key = flags.server_key.or(settings.server_key);
    settings.permissions = flags.permissions.or(settings.permissions);
    settings.capacity = flags.capacity.or(settings.capacity);
    settings.spool = flags.spool.or(settings.spool);
    settings.spool_max = flags.spool_max.or(settings.spool_max);
    settings.device = flags.device.or(settings.device);
    settings.baud = flags.baud.or(settings.baud);
    settings.device_frame_max = flags.device_frame_max.or(settings.device_frame_max);
    settings.metrics = flags.metrics.or(settings.metrics);
    let announcing = announcing.or(settings.announcing());
    settings.announce = announcing.announce;
    settings.announce_every_ms = announcing.announce_every_ms;
    settings.name = announcing.name;
    Ok((settings, verbosity))
}

/// A started proxy of any family.
// One value, made once at start: the variants' sizes cost nothing.
#[allow(clippy::large_enum_variant)]
enum Started {
    Plain(Proxy<cli::WireDialect>),
    Buffered(BufferedProxy<cli::WireDialect>),
    #[cfg(feature = "serial")]
    Serial(SerialBridge),
}

/// What every kind's builder takes from the settings (each builder has the same setters,
/// one definition in the library; here, one place that calls them).
struct Sides {
    timeout: Duration,
    input: Vec<String>,
    output: Vec<String>,
    /// Whether the input binds (REP) and the output binds (PUB), as the kind says.
    input_binds: bool,
    input_connects: bool,
    output_binds: bool,
    /// Verified by every side that binds.
    users: Option<Users>,
    /// Presented by every side that connects.
    credentials: Option<Credentials>,
    /// Checked at the input.
    permissions: Option<Permissions>,
}

impl Sides {
    /// Sides of a kind whose input and output bind or connect as given, with the users
    /// (for the bound sides) and credentials (for the connecting ones) of `settings`. A
    /// users or credentials file no side could use is refused; the environment's
    /// credentials are taken only where a side connects.
    /// The sides of a proxy whose input binds (REP, or a control endpoint) and/or connects
    /// (SUB), and whose output binds (PUB) or connects (REQ).
    fn new(
        settings: &Settings,
        (input_binds, input_connects): (bool, bool),
        output_binds: bool,
    ) -> Result<Sides, CliError> {
        let kind = settings.kind.as_deref().unwrap_or_default();
        let binds = input_binds || (output_binds && !settings.output.is_empty());
        // Announcing to a roster connects too.
        let connects = input_connects || !output_binds || !settings.announce.is_empty();
        let files = cli::SecretFiles {
            users: settings.users.clone(),
            credentials: settings.credentials.clone(),
            curve_key: settings.curve_key.clone(),
            clients: settings.clients.clone(),
            server_key: settings.server_key.clone(),
        };
        let protection = files
            .protection(binds, connects)
            .map_err(|e| format!("{kind}: {e}"))?;
        // A serial device answers in milliseconds; the bridge's own timeout must also be
        // well under a client's (5 s), so that callers get its typed `Timeout`.
        let default_timeout = if kind.eq_ignore_ascii_case("rep2serial") {
            1000
        } else {
            5000
        };
        Ok(Sides {
            timeout: Duration::from_millis(settings.timeout_ms.unwrap_or(default_timeout)),
            input: settings.input.clone(),
            output: settings.output.clone(),
            input_binds,
            input_connects,
            output_binds,
            users: protection.users,
            credentials: protection.credentials,
            permissions: cli::permissions(settings.permissions.as_deref())?,
        })
    }
}

/// Applies `sides` to `builder`, a proxy builder of any kind: the users to the sides that
/// bind, the credentials to those that connect.
macro_rules! with_sides {
    ($builder:expr, $sides:expr) => {{
        let sides: Sides = $sides;
        let mut builder = $builder.timeout(sides.timeout);
        for endpoint in sides.input {
            builder = builder.input(endpoint);
        }
        for endpoint in sides.output {
            builder = builder.output(endpoint);
        }
        if let Some(users) = sides.users {
            if sides.input_binds {
                builder = builder.input_users(users.clone());
            }
            if sides.output_binds {
                builder = builder.output_users(users);
            }
        }
        if let Some(permissions) = sides.permissions {
            builder = builder.input_permissions(permissions);
        }
        if let Some(credentials) = sides.credentials {
            if sides.input_connects {
                builder = builder.input_credentials(credentials.clone());
            }
            if !sides.output_binds {
                builder = builder.output_credentials(credentials);
            }
        }
        builder
    }};
}

fn start(settings: Settings) -> Result<Started, CliError> {
    let kind = settings
        .kind
        .clone()
        .ok_or("--kind is required; try --help")?
        .to_ascii_lowercase();
    let (serial, buffered) = (kind == "rep2serial", kind == "buffered");
    let device_settings = [
        settings.device.is_some(),
        settings.baud.is_some(),
        settings.device_frame_max.is_some(),
    ];
    if !serial && device_settings.contains(&true) {
        return Err(
            "--device, --baud and --device-frame-max apply to --kind rep2serial only".into(),
        );
    }
    if !buffered && (settings.spool.is_some() || settings.capacity.is_some()) {
        return Err("--spool and --capacity apply to --kind buffered only".into());
    }
    if kind != "rep2req" && settings.concurrency.is_some() {
        return Err("--concurrency applies to --kind rep2req only".into());
    }
    if settings.concurrency == Some(0) {
        return Err("--concurrency must be at least 1".into());
    }
    if settings.input.is_empty() {
        return Err("at least one --in is required; try --help".into());
    }
    if !serial && settings.output.is_empty() {
        return Err("at least one --out is required; try --help".into());
    }
    if serial {
        let sides = Sides::new(&settings, (true, false), true)?;
        let device = settings
            .device
            .ok_or("--kind rep2serial needs --device; try --help")?;
        let line = Line {
            device,
            baud: settings.baud.unwrap_or(115_200),
            frame_max: settings.device_frame_max,
        };
        return start_serial(line, sides);
    }
    if buffered {
        let sides = Sides::new(&settings, (true, false), false)?;
        let builder = BufferedProxy::builder_for(cli::wire_dialect())
            .capacity(settings.capacity.unwrap_or(1000));
        let mut builder = with_sides!(builder, sides);
        if let Some(spool) = settings.spool {
            builder = builder.spool(spool, settings.spool_max.unwrap_or(64 << 20));
        }
        return Ok(Started::Buffered(builder.bind()?));
    }
    if !settings.control.is_empty() && !matches!(kind.as_str(), "sub2req" | "sub2pub") {
        return Err(format!(
            "--control applies to --kind sub2req and sub2pub only: {kind} answers the \
             built-in commands on --in"
        )
        .into());
    }
    let kind: ProxyKind = kind.parse()?;
    let binds = kind.rep_input() || !settings.control.is_empty();
    let sides = Sides::new(&settings, (binds, !kind.rep_input()), !kind.req_output())?;
    let mut builder = with_sides!(Proxy::builder_for(kind, cli::wire_dialect()), sides);
    for endpoint in settings.control {
        builder = builder.control(endpoint);
    }
    if let Some(n) = settings.concurrency {
        builder = builder.concurrency(n);
    }
    Ok(Started::Plain(builder.bind()?))
}

/// The serial line of a bridge.
#[cfg_attr(not(feature = "serial"), allow(dead_code))] // read only by the bridge
struct Line {
    device: PathBuf,
    baud: u32,
    frame_max: Option<usize>,
}

/// The serial bridge to `line`.
#[cfg(feature = "serial")]
fn start_serial(line: Line, sides: Sides) -> Result<Started, CliError> {
    let mut builder = SerialBridge::builder(line.device).baud(line.baud);
    if let Some(bytes) = line.frame_max {
        builder = builder.device_frame_max(bytes);
    }
    let builder = with_sides!(builder, sides);
    Ok(Started::Serial(builder.bind()?))
}

#[cfg(not(feature = "serial"))]
fn start_serial(_: Line, _: Sides) -> Result<Started, CliError> {
    Err("this zmqrpc-proxy was built without the `serial` feature (rep2serial)".into())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("zmqrpc-proxy: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), CliError> {
    let (settings, verbosity) = parse()?;
    cli::init_logging(verbosity);
    cli::raise_open_file_limit();
    // What the connecting sides were given: the ready line names them as they are.
    let (given_in, given_out) = (settings.input.clone(), settings.output.clone());
    let metrics_at = settings.metrics.clone();
    let controlled = !settings.control.is_empty();
    let announcing = settings.announcing();
    let announce_as = match announcing.announces() {
        true => settings.connecting_credentials()?,
        false => None,
    };
    let role: String = settings
        .kind
        .as_deref()
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let started = start(settings)?;
    let (shutdown, report, input, output) = match &started {
        Started::Plain(p) => (
            p.shutdown(),
            p.report(),
            p.input_endpoints().to_vec(),
            p.output_endpoints().to_vec(),
        ),
        Started::Buffered(p) => (
            p.shutdown(),
            p.report(),
            p.input_endpoints().to_vec(),
            vec![],
        ),
        #[cfg(feature = "serial")]
        Started::Serial(p) => (
            p.shutdown(),
            p.report(),
            p.input_endpoints().to_vec(),
            p.output_endpoints().to_vec(),
        ),
    };
    let notifier = Notifier::from_env();
    let signals = cli::stop_on_signals(shutdown.clone(), &notifier)?;
    // A side that binds is named by what it bound (wildcard ports resolved); one that
    // connects by what it connects to.
    let side = |bound: Vec<String>, given: Vec<String>| match bound.is_empty() {
        true => given.join(","),
        false => bound.join(","),
    };
    // A subscribing proxy's REP endpoints are its control endpoints: said apart, and where
    // it is reached.
    let (input, control) = match controlled {
        true => (Vec::new(), input),
        false => (input, Vec::new()),
    };
    let input_endpoints = match (input.is_empty(), control.is_empty()) {
        (_, false) => control.clone(),
        (true, true) => given_in.clone(),
        (false, true) => input.clone(),
    };
    let (input, output) = (side(input, given_in), side(output, given_out));
    let mut ready = format!("ready in={input} out={output}");
    if !control.is_empty() {
        ready.push_str(&format!(" control={}", control.join(",")));
    }
    let exporter = cli::metrics(metrics_at.as_deref(), &report)?;
    if let Some(exporter) = &exporter {
        ready.push_str(&format!(" metrics={}", exporter.local_addr()));
    }
    println!("{ready}");
    notifier.ready(&format!("forwarding in={input} out={output}"));
    let announcer = announcing.start(&role, input_endpoints, announce_as)?;
    let watched = report.clone();
    let watch = notifier.watch(shutdown.liveness(), move || {
        systemd::summary(watched.stats().counters())
    })?;
    match started {
        Started::Plain(proxy) => proxy.run()?,
        Started::Buffered(proxy) => proxy.run()?,
        #[cfg(feature = "serial")]
        Started::Serial(bridge) => bridge.run()?,
    }
    // The roster hears that the node is leaving.
    drop(announcer);
    drop(watch);
    drop(exporter);
    // The sockets are closed: let the last answers out before exiting.
    drop(signals);
    log::info!("stopped: {}", systemd::summary(report.stats().counters()));
    Ok(())
}
