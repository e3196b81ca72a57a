//! The binaries' `--metrics` endpoint: every counter, scraped over HTTP and read by real
//! parsers (Debian's `promtool check metrics` for the Prometheus text, the Python
//! `prometheus_client` OpenMetrics parser), and a scraper that misbehaves holds up nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zmqrpc::agent::Echo;
use zmqrpc::transport::RpcClient;

use crate::common::process::{ready_field, Process, PROXY, SERVER};
use crate::common::{ipc_endpoint, secs, slack};

/// `GET path` with `accept`, bounded; the status line, the headers and the body.
fn scrape(addr: &str, path: &str, accept: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(secs(10))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// The sample of `name` in `text` with `role`, as a number.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|line| line.starts_with(&format!("{name}{{")))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Feeds `text` to `promtool check metrics`, if there is one (CI requires it).
fn promtool_accepts(text: &str) -> Option<bool> {
    let required = std::env::var_os("ZMQRPC_REQUIRE_PROMTOOL").is_some();
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!("SKIPPED promtool: {e}");
            return None;
        }
        Err(e) => panic!("promtool is required here: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.trim().is_empty() || out.status.success(),
        "promtool: {said}"
    );
    Some(out.status.success())
}

/// The Python OpenMetrics parser's verdict on `text` (the pyzmqrpc3 venv's
/// `prometheus_client`), if it is there.
fn openmetrics_parser_accepts(text: &str) -> Option<Result<(), String>> {
    let python = std::env::var_os("ZMQRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyzmqrpc3-venv/bin/python")
        });
    let required = std::env::var_os("ZMQRPC_REQUIRE_PROMTOOL").is_some();
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = list(text_string_to_metric_families(sys.stdin.read()))\n\
        print(len(families))\n";
    let child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!("SKIPPED the OpenMetrics parser: {e}");
            return None;
        }
        Err(e) => panic!("{}: {e}", python.display()),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("No module named 'prometheus_client'") && !required {
        eprintln!("SKIPPED the OpenMetrics parser: no prometheus_client");
        return None;
    }
    Some(match out.status.success() {
        true => Ok(()),
        false => Err(stderr),
    })
}

#[test]
fn the_binaries_serve_every_counter_for_prometheus_and_real_parsers_read_it() {
    let agent = ipc_endpoint("metrics-agent");
    let (_server, ready) = Process::start(SERVER, &["--bind", &agent, "--metrics", "127.0.0.1:0"]);
    let server_metrics = ready_field(&ready, "metrics")[0].clone();
    let input = ipc_endpoint("metrics-proxy");
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &input,
            "--out",
            &agent,
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let proxy_metrics = ready_field(&ready, "metrics")[0].clone();
    let mut client = RpcClient::builder()
        .req(&input)
        .timeout(secs(5))
        .connect()
        .unwrap();
    for n in 0..3 {
        assert_eq!(client.call(&Echo(format!("{n}"))).unwrap(), format!("{n}"));
    }

    let (status, headers, text) = scrape(&server_metrics, "/metrics", "*/*");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("text/plain; version=0.0.4"), "{headers}");
    assert_eq!(sample(&text, "zmqrpc_dispatch_served_total"), 3, "{text}");
    assert!(text.contains(&format!("endpoint=\"{agent}\"")), "{text}");
    assert!(text.contains("zmqrpc_up{role=\"server\""), "{text}");
    assert!(text.contains("zmqrpc_limit{role=\"server\",name=\"max_body_bytes\"} 262144"));
    let (_, _, proxied) = scrape(&proxy_metrics, "/metrics", "*/*");
    assert_eq!(
        sample(&proxied, "zmqrpc_proxy_forwarded_total"),
        3,
        "{proxied}"
    );
    assert!(
        proxied.contains("# TYPE zmqrpc_proxy_queued gauge"),
        "{proxied}"
    );
    for text in [&text, &proxied] {
        if let Some(accepted) = promtool_accepts(text) {
            assert!(accepted, "promtool refused:\n{text}");
        }
    }

    let openmetrics = "application/openmetrics-text; version=1.0.0,text/plain;q=0.5";
    let (_, headers, text) = scrape(&proxy_metrics, "/metrics", openmetrics);
    assert!(
        headers.contains("application/openmetrics-text"),
        "{headers}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    if let Some(verdict) = openmetrics_parser_accepts(&text) {
        verdict.unwrap_or_else(|why| panic!("OpenMetrics parser refused: {why}\n{text}"));
    }
    let (status, _, _) = scrape(&proxy_metrics, "/elsewhere", "*/*");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn a_scraper_that_never_sends_or_sends_without_end_holds_up_neither_node_nor_scrapes() {
    let agent = ipc_endpoint("metrics-hostile");
    let (_server, ready) = Process::start(SERVER, &["--bind", &agent, "--metrics", "127.0.0.1:0"]);
    let addr = ready_field(&ready, "metrics")[0].clone();
    // Connects and says nothing.
    let _silent = TcpStream::connect(&addr).unwrap();
    // Sends headers without end.
    let mut flood = TcpStream::connect(&addr).unwrap();
    let junk = vec![b'x'; 64 << 10];
    let _ = flood.write_all(&junk);
    // The node serves all along.
    let mut client = RpcClient::builder()
        .req(&agent)
        .timeout(secs(5))
        .connect()
        .unwrap();
    let started = Instant::now();
    assert_eq!(client.call(&Echo("still".into())).unwrap(), "still");
    assert!(started.elapsed() < secs(1) * slack());
    // And a real scrape is answered once the bad ones have had their moment.
    let started = Instant::now();
    let (status, _, text) = scrape(&addr, "/metrics", "*/*");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(sample(&text, "zmqrpc_dispatch_served_total"), 1);
    let waited = started.elapsed();
    assert!(
        waited < (zmqrpc::metrics::REQUEST_WAIT * 2 + Duration::from_secs(1)) * slack(),
        "{waited:?}"
    );
    // The flood was cut off: its connection is closed, with a 400.
    let mut answer = Vec::new();
    flood.set_read_timeout(Some(secs(5))).unwrap();
    let _ = flood.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
}

#[test]
fn a_config_file_names_the_metrics_address_the_roster_and_where_to_announce() {
    let roster = ipc_endpoint("metrics-config-roster");
    let config = crate::common::process::TempPath::with(
        "metrics-config",
        &format!(
            "bind = [\"{roster}\"]\nroster = true\nmetrics = \"127.0.0.1:0\"\n\
             announce = [\"{roster}\"]\nannounce_every_ms = 200\nname = \"self\"\n"
        ),
    );
    let (_node, ready) = Process::start(SERVER, &["--config", config.as_str()]);
    let addr = ready_field(&ready, "metrics")[0].clone();
    let (status, _, _) = scrape(&addr, "/metrics", "*/*");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // It announces itself to its own roster.
    let mut client = RpcClient::builder()
        .req(&roster)
        .timeout(secs(5))
        .connect()
        .unwrap();
    assert!(crate::common::eventually(secs(5), || {
        let view = client
            .call(&zmqrpc::transport::presence::GetRoster)
            .unwrap();
        view.member("self").is_some_and(|m| m.up)
    }));
}
