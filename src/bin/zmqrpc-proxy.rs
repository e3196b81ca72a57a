//! `zmqrpc-proxy`: forwards zmqrpc frames between sockets; see `--help`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zmqrpc::cli::{self, CliError};
#[cfg(feature = "serial")]
use zmqrpc::transport::bridge::SerialBridge;
use zmqrpc::transport::{BufferedProxy, Credentials, Proxy, ProxyKind, Users};

const HELP: &str = "\
zmqrpc-proxy: forwards zmqrpc frames from one socket to another.

USAGE:
    zmqrpc-proxy --kind KIND --in ENDPOINT --out ENDPOINT [OPTIONS]
    zmqrpc-proxy --config FILE [OPTIONS]

KINDS:
    rep2req     calls in (REP, bound), forwarded to a server (REQ), answers returned
    buffered    like rep2req, but each call is acknowledged once queued (and spooled),
                then delivered in order, retried until the server answers
    rep2pub     calls in (REP, bound), published (PUB, bound), acknowledged at once
    sub2req     publications in (SUB, connects), forwarded to a server (REQ)
    sub2pub     publications in (SUB, connects), published again (PUB, bound)
    rep2serial  calls in (REP, bound), carried to a microcontroller on a serial port
                (--device) and answered by it; its notifications published (--out,
                PUB, bound; optional). A missing device is reopened with backoff
                while callers get `Unavailable` errors

OPTIONS:
    --in ENDPOINT          input endpoint (repeatable), e.g. tcp://*:30000
    --out ENDPOINT         output endpoint (repeatable), e.g. tcp://10.0.0.2:30001
    --timeout MS           wait for each downstream answer at most this long [5000]
    --device PATH          rep2serial: the serial device, e.g. /dev/ttyACM0
    --baud N               rep2serial: the line speed [115200]
    --users FILE           the input accepts only these users (`user:password` lines)
    --credentials FILE     the output presents these (`user:password`); without it,
                           $ZMQRPC_USER and $ZMQRPC_PASSWORD if set
    --capacity N           buffered: requests held at most [1000]
    --spool FILE           buffered: keep requests in FILE too, so a restart loses nothing
    --spool-max BYTES      buffered: the spool's size bound [67108864]
    --config FILE          read these settings from a TOML file (flags win), e.g.
                               kind = \"buffered\"
                               in = [\"tcp://*:30000\"]
                               out = [\"tcp://10.0.0.2:30001\"]
                               spool = \"/var/lib/zmqrpc/spool\"
    -v, --verbose          log more (RUST_LOG overrides)
    -q, --quiet            log less
    -h, --help             print this help
    -V, --version          print the version

Stops cleanly on SIGINT or SIGTERM (the spool is synced); prints one line
`ready in=... out=...` to stdout once its sockets are bound.
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
    timeout_ms: Option<u64>,
    users: Option<PathBuf>,
    credentials: Option<PathBuf>,
    capacity: Option<usize>,
    spool: Option<PathBuf>,
    spool_max: Option<u64>,
    device: Option<PathBuf>,
    baud: Option<u32>,
}

fn parse() -> Result<(Settings, i8), CliError> {
    use lexopt::prelude::*;
    let mut flags = Settings::default();
    let mut config = None;
    let mut verbosity = 0;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        if cli::common_flag(&arg, &mut verbosity, HELP) {
            continue;
        }
        match arg {
            Long("kind") => flags.kind = Some(cli::string(&mut parser)?),
            Long("in") => flags.input.push(cli::string(&mut parser)?),
            Long("out") => flags.output.push(cli::string(&mut parser)?),
            Long("timeout") => flags.timeout_ms = Some(parser.value()?.parse()?),
            Long("users") => flags.users = Some(cli::path(&mut parser)?),
            Long("credentials") => flags.credentials = Some(cli::path(&mut parser)?),
            Long("capacity") => flags.capacity = Some(parser.value()?.parse()?),
            Long("spool") => flags.spool = Some(cli::path(&mut parser)?),
            Long("spool-max") => flags.spool_max = Some(parser.value()?.parse()?),
            Long("device") => flags.device = Some(cli::path(&mut parser)?),
            Long("baud") => flags.baud = Some(parser.value()?.parse()?),
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
    settings.timeout_ms = flags.timeout_ms.or(settings.timeout_ms);
    settings.users = flags.users.or(settings.users);
    settings.credentials = flags.credentials.or(settings.credentials);
    settings.capacity = flags.capacity.or(settings.capacity);
    settings.spool = flags.spool.or(settings.spool);
    settings.spool_max = flags.spool_max.or(settings.spool_max);
    settings.device = flags.device.or(settings.device);
    settings.baud = flags.baud.or(settings.baud);
    Ok((settings, verbosity))
}

/// A started proxy of any family.
enum Started {
    Plain(Proxy<cli::WireDialect>),
    Buffered(BufferedProxy<cli::WireDialect>),
    #[cfg(feature = "serial")]
    Serial(SerialBridge),
}

fn start(settings: Settings) -> Result<Started, CliError> {
    let kind = settings
        .kind
        .clone()
        .ok_or("--kind is required; try --help")?;
    let timeout = Duration::from_millis(settings.timeout_ms.unwrap_or(5000));
    let users = cli::users(settings.users.as_deref())?;
    let credentials = cli::credentials(settings.credentials.as_deref())?;
    let serial = kind.eq_ignore_ascii_case("rep2serial");
    if !serial && (settings.device.is_some() || settings.baud.is_some()) {
        return Err("--device and --baud apply to --kind rep2serial only".into());
    }
    if serial {
        return start_serial(settings, timeout, users, credentials);
    }
    if settings.input.is_empty() || settings.output.is_empty() {
        return Err("at least one --in and one --out are required; try --help".into());
    }
    if kind.eq_ignore_ascii_case("buffered") {
        let mut builder = BufferedProxy::builder_for(cli::wire_dialect())
            .timeout(timeout)
            .capacity(settings.capacity.unwrap_or(1000));
        for endpoint in settings.input {
            builder = builder.input(endpoint);
        }
        for endpoint in settings.output {
            builder = builder.output(endpoint);
        }
        if let Some(users) = users {
            builder = builder.input_users(users);
        }
        if let Some(credentials) = credentials {
            builder = builder.output_credentials(credentials);
        }
        if let Some(spool) = settings.spool {
            builder = builder.spool(spool, settings.spool_max.unwrap_or(64 << 20));
        }
        return Ok(Started::Buffered(builder.bind()?));
    }
    if settings.spool.is_some() || settings.capacity.is_some() {
        return Err("--spool and --capacity apply to --kind buffered only".into());
    }
    let kind: ProxyKind = kind.parse()?;
    let mut builder = Proxy::builder_for(kind, cli::wire_dialect()).timeout(timeout);
    for endpoint in settings.input {
        builder = builder.input(endpoint);
    }
    for endpoint in settings.output {
        builder = builder.output(endpoint);
    }
    if let Some(users) = users {
        builder = builder.input_users(users);
    }
    if let Some(credentials) = credentials {
        builder = builder.output_credentials(credentials);
    }
    Ok(Started::Plain(builder.bind()?))
}

/// The serial bridge: `--in` and `--device` required, `--out` optional.
#[cfg(feature = "serial")]
fn start_serial(
    settings: Settings,
    timeout: Duration,
    users: Option<Users>,
    credentials: Option<Credentials>,
) -> Result<Started, CliError> {
    let device = settings
        .device
        .ok_or("--kind rep2serial needs --device; try --help")?;
    if settings.input.is_empty() {
        return Err("at least one --in is required; try --help".into());
    }
    if settings.spool.is_some() || settings.capacity.is_some() {
        return Err("--spool and --capacity apply to --kind buffered only".into());
    }
    let mut builder = SerialBridge::builder(device)
        .baud(settings.baud.unwrap_or(115_200))
        .timeout(timeout);
    for endpoint in settings.input {
        builder = builder.input(endpoint);
    }
    for endpoint in settings.output {
        builder = builder.output(endpoint);
    }
    if let Some(users) = users {
        builder = builder.input_users(users);
    }
    if let Some(credentials) = credentials {
        builder = builder.output_credentials(credentials);
    }
    Ok(Started::Serial(builder.bind()?))
}

#[cfg(not(feature = "serial"))]
fn start_serial(
    _: Settings,
    _: Duration,
    _: Option<Users>,
    _: Option<Credentials>,
) -> Result<Started, CliError> {
    Err("this zmqrpc-proxy was built without the `serial` feature".into())
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
    let started = start(settings)?;
    // The counters are read once more after the loop: a closure over the live ones.
    type Counts = Box<dyn Fn() -> String>;
    let (shutdown, counts, input, output): (_, Counts, _, _) = match &started {
        Started::Plain(p) => {
            let stats = p.stats();
            (
                p.shutdown(),
                Box::new(move || format!("{:?}", stats.snapshot())),
                p.input_endpoints().to_vec(),
                p.output_endpoints().to_vec(),
            )
        }
        Started::Buffered(p) => {
            let stats = p.stats();
            (
                p.shutdown(),
                Box::new(move || format!("{:?}", stats.snapshot())),
                p.input_endpoints().to_vec(),
                vec![],
            )
        }
        #[cfg(feature = "serial")]
        Started::Serial(p) => {
            let stats = p.stats();
            (
                p.shutdown(),
                Box::new(move || format!("{:?}", stats.snapshot())),
                p.input_endpoints().to_vec(),
                p.output_endpoints().to_vec(),
            )
        }
    };
    let signals = cli::stop_on_signals(shutdown)?;
    println!("ready in={} out={}", input.join(","), output.join(","));
    match started {
        Started::Plain(proxy) => proxy.run()?,
        Started::Buffered(proxy) => proxy.run()?,
        #[cfg(feature = "serial")]
        Started::Serial(bridge) => bridge.run()?,
    }
    // The sockets are closed: let the last answers out before exiting.
    drop(signals);
    log::info!("stopped: {}", counts());
    Ok(())
}
