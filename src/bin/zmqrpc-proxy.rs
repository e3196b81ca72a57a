//! `zmqrpc-proxy`: forwards zmqrpc frames between sockets; see `--help`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zmqrpc::cli::{self, CliError};
use zmqrpc::transport::{BufferedProxy, Proxy, ProxyKind};

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

OPTIONS:
    --in ENDPOINT          input endpoint (repeatable), e.g. tcp://*:30000
    --out ENDPOINT         output endpoint (repeatable), e.g. tcp://10.0.0.2:30001
    --timeout MS           wait for each downstream answer at most this long [5000]
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
    Ok((settings, verbosity))
}

/// A started proxy of either family.
enum Started {
    Plain(Proxy<cli::WireDialect>),
    Buffered(BufferedProxy<cli::WireDialect>),
}

fn start(settings: Settings) -> Result<Started, CliError> {
    let kind = settings.kind.ok_or("--kind is required; try --help")?;
    if settings.input.is_empty() || settings.output.is_empty() {
        return Err("at least one --in and one --out are required; try --help".into());
    }
    let timeout = Duration::from_millis(settings.timeout_ms.unwrap_or(5000));
    let users = cli::users(settings.users.as_deref())?;
    let credentials = cli::credentials(settings.credentials.as_deref())?;
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
    let (shutdown, stats, input, output) = match &started {
        Started::Plain(p) => (
            p.shutdown(),
            p.stats(),
            p.input_endpoints().to_vec(),
            p.output_endpoints().to_vec(),
        ),
        Started::Buffered(p) => (
            p.shutdown(),
            p.stats(),
            p.input_endpoints().to_vec(),
            vec![],
        ),
    };
    let signals = cli::stop_on_signals(shutdown)?;
    println!("ready in={} out={}", input.join(","), output.join(","));
    match started {
        Started::Plain(proxy) => proxy.run()?,
        Started::Buffered(proxy) => proxy.run()?,
    }
    // The sockets are closed: let the last answers out before exiting.
    drop(signals);
    log::info!("stopped: {:?}", stats.snapshot());
    Ok(())
}
