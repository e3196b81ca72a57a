//! Presence through the binaries: nodes announce themselves to a roster (`zmqrpc-server
//! --roster`), a dashboard asks it who is up, and sees a node go away — at once when it
//! stops, after its silence timeout when it dies — without polling any node.

use std::time::{Duration, Instant};

use zmqrpc::transport::presence::{GetRoster, RosterView};
use zmqrpc::transport::{Credentials, RpcClient};

use crate::common::process::{bin, Process, TempPath, PROXY, SERVER};
use crate::common::{eventually, ipc_endpoint, secs, slack};

fn roster_of(client: &mut RpcClient) -> RosterView {
    client.call(&GetRoster).unwrap()
}

fn dashboard(endpoint: &str, credentials: Option<Credentials>) -> RpcClient {
    let mut builder = RpcClient::builder().req(endpoint).timeout(secs(5));
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    builder.connect().unwrap()
}

#[test]
fn a_dashboard_sees_nodes_come_up_and_go_away_without_polling_them() {
    let roster = ipc_endpoint("presence-roster");
    let (_roster, _) = Process::start(SERVER, &["--bind", &roster, "--roster"]);
    // A relay announcing every 2 s (down only 6 s after its last word, unless it says it
    // is leaving), and an agent every 200 ms (down 600 ms after its last word).
    let relay_in = ipc_endpoint("presence-relay");
    let (mut relay, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &relay_in,
            "--out",
            &roster,
            "--announce",
            &roster,
            "--announce-every",
            "2000",
            "--name",
            "relay-a",
        ],
    );
    let agent_at = ipc_endpoint("presence-agent");
    let (agent, _) = Process::start(
        SERVER,
        &[
            "--bind",
            &agent_at,
            "--announce",
            &roster,
            "--announce-every",
            "200",
            "--name",
            "agent-b",
        ],
    );
    let mut dashboard = dashboard(&roster, None);
    assert!(eventually(secs(5), || {
        let view = roster_of(&mut dashboard);
        ["relay-a", "agent-b"]
            .iter()
            .all(|n| view.member(n).is_some_and(|m| m.up))
    }));
    let view = roster_of(&mut dashboard);
    let relay_seen = view.member("relay-a").unwrap();
    assert_eq!(relay_seen.role, "rep2req");
    assert_eq!(relay_seen.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(relay_seen.endpoints, vec![relay_in.clone()]);
    assert_eq!(
        view.member("agent-b").unwrap().endpoints,
        vec![agent_at.clone()]
    );

    // The agent dies without a word: down once three of its intervals pass in silence.
    agent.signal(libc::SIGKILL);
    let killed = Instant::now();
    assert!(eventually(secs(5) * slack(), || {
        !roster_of(&mut dashboard).member("agent-b").unwrap().up
    }));
    let after = killed.elapsed();
    assert!(after >= Duration::from_millis(400), "down after {after:?}");
    let gone = roster_of(&mut dashboard).member("agent-b").unwrap().clone();
    assert!(gone.last_heard_ms >= 600, "{gone:?}");
    assert!(roster_of(&mut dashboard).member("relay-a").unwrap().up);

    // The relay stops cleanly: it says it is leaving, and is down long before its 6 s.
    let stopped = Instant::now();
    relay.signal(libc::SIGTERM);
    assert_eq!(relay.wait(secs(2) * slack()), Some(0));
    assert!(eventually(secs(2), || {
        !roster_of(&mut dashboard).member("relay-a").unwrap().up
    }));
    assert!(
        stopped.elapsed() < secs(3) * slack(),
        "{:?}",
        stopped.elapsed()
    );

    // The command line shows the same roster.
    let out = bin(SERVER, &["call", "roster", "--connect", &roster])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    let state = |name: &str| {
        let line = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default();
        line.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(state("agent-b"), "agent-b server down", "{table}");
    assert_eq!(state("relay-a"), "relay-a rep2req down", "{table}");
}

#[test]
fn a_protected_roster_hears_only_whom_it_lets_announce_and_records_who() {
    let users = TempPath::with(
        "presence-users",
        "node-a:a-pass\nintruder:i-pass\nops:o-pass\n",
    );
    let rules = TempPath::with(
        "presence-rules",
        "node-a call zmqrpc.presence.announce\nops call zmqrpc.presence.roster\n",
    );
    let roster = ipc_endpoint("presence-protected");
    let (_roster, _) = Process::start(
        SERVER,
        &[
            "--bind",
            &roster,
            "--roster",
            "--users",
            users.as_str(),
            "--permissions",
            rules.as_str(),
        ],
    );
    let announce_as = |user: &str, password: &str, name: &str| {
        let credentials =
            TempPath::with(&format!("presence-{user}"), &format!("{user}:{password}\n"));
        let at = ipc_endpoint(&format!("presence-{name}"));
        let process = Process::start(
            SERVER,
            &[
                "--bind",
                &at,
                "--announce",
                &roster,
                "--announce-every",
                "200",
                "--name",
                name,
                "--credentials",
                credentials.as_str(),
            ],
        );
        (process, credentials)
    };
    let _allowed = announce_as("node-a", "a-pass", "allowed");
    let _forbidden = announce_as("intruder", "i-pass", "forbidden");
    let _wrong = announce_as("node-a", "not-the-password", "impostor");
    let mut ops = dashboard(&roster, Some(Credentials::new("ops", "o-pass")));
    assert!(eventually(secs(5), || roster_of(&mut ops)
        .member("allowed")
        .is_some()));
    // A second or so of their announcements, refused.
    std::thread::sleep(Duration::from_millis(600));
    let view = roster_of(&mut ops);
    let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["allowed"], "{view:?}");
    assert_eq!(
        view.member("allowed").unwrap().user_id.as_deref(),
        Some("node-a")
    );
    // A node may announce but not read the roster.
    let mut node = dashboard(&roster, Some(Credentials::new("node-a", "a-pass")));
    assert!(node.call(&GetRoster).is_err());
}
