//! The fleet command line (`zmqrpc-server call`): one command on many nodes of mixed kinds,
//! one of them dead, within one deadline; over PLAIN and CURVE; the exit status says how
//! many failed.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::process::{bin, ready_field, Process, TempPath, PROXY, SERVER};
use crate::common::{ipc_endpoint, slack};

/// Runs `zmqrpc-server call ARGS…`, bounded: the command's own deadline plus slack.
fn call(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = bin(SERVER, &[&["call"][..], args].concat())
        .output()
        .unwrap();
    (out, started.elapsed())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The fleet of the Done-when: a server, a rep2req proxy and a buffered proxy in front of it,
/// a sub2pub relay answering on its control endpoint, and a node that is not there.
struct Fleet {
    _nodes: Vec<Process>,
    file: TempPath,
}

fn fleet() -> Fleet {
    let agent = ipc_endpoint("fleet-agent");
    let (server, _) = Process::start(SERVER, &["--bind", &agent]);
    let relay = ipc_endpoint("fleet-rep2req");
    let (rep2req, _) = Process::start(
        PROXY,
        &["--kind", "rep2req", "--in", &relay, "--out", &agent],
    );
    let spool = ipc_endpoint("fleet-buffered");
    let (buffered, _) = Process::start(
        PROXY,
        &["--kind", "buffered", "--in", &spool, "--out", &agent],
    );
    let control = ipc_endpoint("fleet-sub2pub");
    let (sub2pub, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "sub2pub",
            "--in",
            &ipc_endpoint("fleet-nobody-publishes"),
            "--out",
            "tcp://127.0.0.1:*",
            "--control",
            &control,
        ],
    );
    let dead = ipc_endpoint("fleet-dead");
    let file = TempPath::with(
        "fleet-file",
        &format!(
            "# the site\nagent {agent}\nrelay {relay}\nspool {spool}\n\
             fanout {control}   # a sub2pub relay's control endpoint\ngone {dead}\n"
        ),
    );
    Fleet {
        _nodes: vec![server, rep2req, buffered, sub2pub],
        file,
    }
}

/// The rows of a table, by node name: (status, answer).
fn rows(table: &str) -> Vec<(String, String, String)> {
    table
        .lines()
        .skip(1)
        .filter(|line| !line.contains(" answered, "))
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap().to_owned();
            let status = words.next().unwrap().to_owned();
            let rest: Vec<&str> = words.collect();
            (name, status, rest.join(" "))
        })
        .collect()
}

#[test]
fn one_command_reaches_five_nodes_of_mixed_kinds_one_dead_within_its_deadline() {
    let fleet = fleet();
    let deadline = Duration::from_millis(1500);
    let ms = deadline.as_millis().to_string();
    let (out, took) = call(&["ping", "--fleet", fleet.file.as_str(), "--timeout", &ms]);
    let table = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{table}{}", stderr(&out));
    assert!(
        took < deadline + Duration::from_secs(2) * slack(),
        "{took:?}"
    );
    let rows = rows(&table);
    let expected = [
        ("agent", "ok", "server"),
        ("relay", "ok", "rep2req"),
        ("spool", "ok", "buffered"),
        ("fanout", "ok", "sub2pub"),
        ("gone", "unreachable", "no connection within"),
    ];
    assert_eq!(rows.len(), expected.len(), "{table}");
    for ((name, status, said), (want_name, want_status, want_said)) in rows.iter().zip(expected) {
        assert_eq!(
            (name.as_str(), status.as_str()),
            (want_name, want_status),
            "{table}"
        );
        assert!(said.contains(want_said), "{table}");
    }
    assert!(table.ends_with("4 of 5 answered, 1 failed\n"), "{table}");

    // JSON, and a named command with JSON arguments: the proxy forwards it with the shape
    // the server described, the buffered proxy accepts it, the relay does not serve it.
    let (out, _) = call(&[
        "agent.echo",
        "\"from the fleet\"",
        "--fleet",
        fleet.file.as_str(),
        "--timeout",
        &ms,
        "--json",
        "--progress",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let outcomes: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let by_name = |name: &str| {
        outcomes
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["node"] == name)
            .unwrap_or_else(|| panic!("{name}: {outcomes}"))
            .clone()
    };
    assert_eq!(by_name("agent")["answer"], "from the fleet");
    assert_eq!(by_name("relay")["answer"], "from the fleet");
    assert_eq!(by_name("spool")["accepted"], true, "{outcomes}");
    assert_eq!(
        by_name("fanout")["error"]["kind"],
        "not served",
        "{outcomes}"
    );
    assert_eq!(
        by_name("gone")["error"]["kind"],
        "unreachable",
        "{outcomes}"
    );
    assert!(stderr(&out).contains("progress: "), "{}", stderr(&out));

    // Stats from every node, as JSON: each its own counters.
    let (out, _) = call(&[
        "stats",
        "--fleet",
        fleet.file.as_str(),
        "--timeout",
        &ms,
        "--json",
    ]);
    let outcomes: Value = serde_json::from_str(&stdout(&out)).unwrap();
    for outcome in outcomes
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["ok"] == true)
    {
        let sections = outcome["answer"]["sections"].as_array().unwrap();
        assert!(sections.iter().any(|s| s["name"] == "input"), "{outcome}");
    }
}

#[test]
fn arguments_that_do_not_fit_and_commands_nobody_serves_are_said_per_node() {
    let agent = ipc_endpoint("fleet-args-agent");
    let (_server, _) = Process::start(SERVER, &["--bind", &agent]);
    let (out, _) = call(&["agent.echo", "42", "--connect", &agent, "--connect", &agent]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("expected a string, got the number 42"),
        "{}",
        stdout(&out)
    );
    let (out, _) = call(&["no.such.command", "--connect", &agent]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not serve no.such.command"),
        "{}",
        stderr(&out)
    );
    // Not JSON at all: refused before anything is sent.
    let (out, _) = call(&["agent.echo", "{nope", "--connect", &agent]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("not JSON"), "{}", stderr(&out));
    let (out, _) = call(&["ping"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--connect ENDPOINT or --fleet FILE"));
    let bad = TempPath::with("fleet-bad", "one ipc://a\none ipc://b\n");
    let (out, _) = call(&["ping", "--fleet", bad.as_str()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("line 2: \"one\" again"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_fleet_is_reached_over_plain_and_over_curve_with_each_nodes_key() {
    // PLAIN: the right password answered, the wrong one refused, on one line each.
    let users = TempPath::with("fleet-users", "ops:o-pass\n");
    let agent = ipc_endpoint("fleet-plain");
    let (_plain, _) = Process::start(SERVER, &["--bind", &agent, "--users", users.as_str()]);
    let right = TempPath::with("fleet-right", "ops:o-pass\n");
    let wrong = TempPath::with("fleet-wrong", "ops:nope\n");
    let (out, _) = call(&["ping", "--connect", &agent, "--credentials", right.as_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("pong: server"), "{}", stdout(&out));
    let (out, _) = call(&[
        "ping",
        "--connect",
        &agent,
        "--connect",
        &agent,
        "--credentials",
        wrong.as_str(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("refused"), "{}", stdout(&out));

    // CURVE: two agents with keys of their own, named with them in the fleet file.
    let dir = TempPath::new("fleet-keys");
    std::fs::create_dir_all(&dir.0).unwrap();
    let keygen = |name: &str| {
        let base = dir.0.join(name);
        let out = bin(SERVER, &["keygen", base.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let ops_public = keygen("ops");
    let clients = dir.0.join("clients");
    std::fs::write(&clients, format!("ops:{ops_public}\n")).unwrap();
    let mut agents = Vec::new();
    let mut lines = String::new();
    for name in ["north", "south"] {
        keygen(name);
        let key = dir.0.join(format!("{name}.key"));
        let (process, ready) = Process::start(
            SERVER,
            &[
                "--bind",
                "tcp://127.0.0.1:*",
                "--curve-key",
                key.to_str().unwrap(),
                "--clients",
                clients.to_str().unwrap(),
            ],
        );
        let endpoint = ready_field(&ready, "bind")[0].clone();
        lines.push_str(&format!("{name} {endpoint} {name}.pub\n"));
        agents.push(process);
    }
    let file = dir.0.join("fleet");
    std::fs::write(&file, &lines).unwrap();
    let ops_key = dir.0.join("ops.key");
    let curve = |file: &Path| {
        call(&[
            "echo",
            "over curve",
            "--fleet",
            file.to_str().unwrap(),
            "--curve-key",
            ops_key.to_str().unwrap(),
            "--timeout",
            "5000",
        ])
    };
    let (out, _) = curve(&file);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let answered = rows(&stdout(&out));
    assert_eq!(answered.len(), 2, "{answered:?}");
    for (_, status, said) in &answered {
        assert_eq!(status, "ok", "{answered:?}");
        assert!(said.ends_with("over curve"), "{answered:?}");
    }
    // South's line with north's key: refused at once, north still answered.
    let swapped = dir.0.join("swapped");
    std::fs::write(&swapped, lines.replace("south.pub", "north.pub")).unwrap();
    let started = Instant::now();
    let (out, _) = curve(&swapped);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(started.elapsed() < Duration::from_secs(4) * slack());
    let rows = rows(&stdout(&out));
    assert_eq!(rows[0].1, "ok", "{rows:?}");
    assert_eq!(rows[1].1, "refused", "{rows:?}");
}
