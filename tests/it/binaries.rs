//! The device binaries: they start, serve, explain themselves, read config files (flags
//! win), check and present credentials, forward every proxy kind, stop on SIGTERM within a
//! second and on SIGINT after the call in flight (at once on a second signal), and a buffered
//! proxy killed with SIGKILL loses nothing it acknowledged.
#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::agent::Echo;
use zmqrpc::transport::node::Ping;
use zmqrpc::transport::{
    CallError, Credentials, HandshakeFailure, RpcClient, RpcServer, Running, ServerStats, Users,
};
use zmqrpc::ErrorCode;

use crate::common::process::*;

/// A client presenting `user`'s `password`.
fn client_as(endpoint: &str, user: &str, password: &str) -> RpcClient {
    RpcClient::builder()
        .req(endpoint)
        .credentials(Credentials::new(user, password))
        .timeout(secs(5))
        .connect()
        .unwrap()
}

/// The call failed because `endpoint` refused the credentials.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, CallError>, endpoint: &str) {
    match result {
        Err(CallError::AuthFailed {
            endpoint: refusing,
            reason: HandshakeFailure::Refused,
        }) => assert_eq!(refusing, endpoint),
        other => panic!("expected AuthFailed(Refused) from {endpoint}: {other:?}"),
    }
}

/// A standard test server on a free port, accepting only `users` if given.
fn library_server(users: Option<Users>) -> (String, Running<ServerStats>) {
    let mut builder = standard_server().rep("tcp://127.0.0.1:*");
    if let Some(users) = users {
        builder = builder.users(users);
    }
    let server = builder.bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    (endpoint, server.spawn().unwrap())
}

#[test]
fn both_binaries_explain_themselves() {
    for program in [PROXY, SERVER] {
        let out = command(program).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("USAGE:") && help.contains("SIGTERM"),
            "{help}"
        );
        let bad = command(program).arg("--no-such-flag").output().unwrap();
        assert!(!bad.status.success());
        let complaint = String::from_utf8_lossy(&bad.stderr);
        assert!(
            complaint.contains("--help"),
            "{program}: {complaint:?} {bad:?}"
        );
    }
}

#[test]
fn the_agent_serves_through_a_proxy_and_both_stop_on_sigterm_within_a_second() {
    let agent_endpoint = ipc_endpoint("agent");
    let proxy_endpoint = ipc_endpoint("agent-proxy");
    let (mut agent, ready) = Process::start(SERVER, &["--bind", &agent_endpoint]);
    assert_eq!(ready, format!("ready bind={agent_endpoint}"));
    let (mut proxy, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &proxy_endpoint,
            "--out",
            &agent_endpoint,
        ],
    );

    let mut client = client(&proxy_endpoint);
    assert_eq!(
        client.call(&Ping).unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(client.call(&Echo("through".into())).unwrap(), "through");
    // The client subcommand, the way an operator would use it.
    let out = command(SERVER)
        .args(["call", "echo", "hi", "there", "--connect", &proxy_endpoint])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "hi there\n");

    for process in [&mut proxy, &mut agent] {
        process.signal(libc::SIGTERM);
        assert_eq!(process.wait(Duration::from_secs(1) * slack()), Some(0));
    }
}

#[test]
fn a_buffered_proxy_killed_after_acknowledging_delivers_everything_when_restarted() {
    let input = ipc_endpoint("killed-in");
    let downstream = ipc_endpoint("killed-down");
    let spool = std::env::temp_dir().join(format!("zmqrpc-killed-spool-{}", std::process::id()));
    let _ = std::fs::remove_file(&spool);
    let args = [
        "--kind",
        "buffered",
        "--in",
        &input,
        "--out",
        &downstream,
        "--timeout",
        "200",
        "--spool",
        spool.to_str().unwrap(),
    ];
    const N: u32 = 25;
    {
        let (proxy, _) = Process::start(PROXY, &args);
        let mut client = client(&input);
        for seq in 0..N {
            client.call(&Sample { seq, value: 0.0 }).unwrap(); // acknowledged = on disk
        }
        proxy.signal(libc::SIGKILL);
    } // (drop reaps it)

    let samples = Samples::default();
    let _server = samples
        .server()
        .rep(&downstream)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let (_proxy, _) = Process::start(PROXY, &args);
    // At-least-once: an answer later than the 200 ms timeout makes a repeat.
    assert_eq!(
        samples.wait_for_delivered(N as usize, secs(10)),
        (0..N).collect::<Vec<_>>(),
        "{:?}",
        samples.seqs()
    );
    let _ = std::fs::remove_file(&spool);
}

// ---------------------------------------------------------------------------------------
// Config files: the values in the file are used, and a flag beside `--config` wins.

#[test]
fn the_proxy_takes_its_settings_from_a_config_file() {
    let (server, running) = library_server(None);
    let dead = dead_endpoint();
    let users = TempPath::with("proxy-config-users", "alice:a-pass\n");
    let input = ipc_endpoint("proxy-config-in");
    let timeout = ms(200);
    let config = TempPath::with(
        "proxy-config.toml",
        &format!(
            "kind = \"rep2req\"\nin = [\"{input}\"]\nout = [\"{server}\", \"{dead}\"]\n\
             timeout_ms = {}\nusers = \"{}\"\n",
            timeout.as_millis(),
            users.as_str()
        ),
    );
    let (_proxy, ready) = Process::start(PROXY, &["--config", config.as_str()]);
    // A REQ output binds nothing: it is named by what it connects to.
    assert_eq!(ready, format!("ready in={input} out={server},{dead}"));

    // The two outputs take turns: one call is answered, the other times out after the file's
    // timeout (200 ms), not the default 5 s.
    let mut alice = client_as(&input, "alice", "a-pass");
    let (mut answered, mut timed_out) = (0, 0);
    for _ in 0..2 {
        let started = Instant::now();
        match alice.call(&Add(40, 2)) {
            Ok(42) => answered += 1,
            Err(CallError::Remote { error, .. }) if error.code == ErrorCode::Timeout => {
                let took = started.elapsed();
                assert!(took >= timeout && took < timeout + ms(800), "{took:?}");
                timed_out += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((answered, timed_out), (1, 1));
    // The file's users file guards the input.
    assert_refused(client_as(&input, "alice", "wrong").call(&Add(1, 1)), &input);
    assert_eq!(running.stats().snapshot().receiver.received, 1);
}

#[test]
fn flags_given_beside_the_proxy_config_file_win() {
    // Only carol may call the server: the proxy must present the flag's credentials.
    let (server, running) = library_server(Some(Users::new().with("carol", "c-pass")));
    let dead = dead_endpoint();
    let file_users = TempPath::with("file-users", "alice:a-pass\n");
    let flag_users = TempPath::with("flag-users", "bob:b-pass\n");
    let file_credentials = TempPath::with("file-credentials", "carol:wrong\n");
    let flag_credentials = TempPath::with("flag-credentials", "carol:c-pass\n");
    let file_input = ipc_endpoint("file-in");
    let flag_input = ipc_endpoint("flag-in");
    // `out` is in the file only: it is used.
    let config = TempPath::with(
        "flags-win.toml",
        &format!(
            "kind = \"rep2pub\"\nin = [\"{file_input}\"]\nout = [\"{server}\", \"{dead}\"]\n\
             timeout_ms = 60000\nusers = \"{}\"\ncredentials = \"{}\"\n",
            file_users.as_str(),
            file_credentials.as_str()
        ),
    );
    let timeout = ms(200);
    let timeout_flag = timeout.as_millis().to_string();
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--config",
            config.as_str(),
            "--kind",
            "rep2req",
            "--in",
            &flag_input,
            "--timeout",
            &timeout_flag,
            "--users",
            flag_users.as_str(),
            "--credentials",
            flag_credentials.as_str(),
        ],
    );
    // rep2req (a rep2pub would bind its output), on the flag's input only.
    assert_eq!(ready, format!("ready in={flag_input} out={server},{dead}"));
    assert!(!std::path::Path::new(file_input.trim_start_matches("ipc://")).exists());

    let mut bob = client_as(&flag_input, "bob", "b-pass");
    let (mut answered, mut timed_out) = (0, 0);
    for _ in 0..2 {
        let started = Instant::now();
        match bob.call(&Add(40, 2)) {
            Ok(42) => answered += 1, // carol's right password reached the server
            Err(CallError::Remote { error, .. }) if error.code == ErrorCode::Timeout => {
                let took = started.elapsed();
                assert!(took >= timeout && took < timeout + ms(800), "{took:?}");
                timed_out += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((answered, timed_out), (1, 1));
    // The flag's users replaced the file's.
    assert_refused(
        client_as(&flag_input, "alice", "a-pass").call(&Add(1, 1)),
        &flag_input,
    );
    assert_eq!(running.stats().snapshot().receiver.received, 1);
}

#[test]
fn the_server_takes_bind_and_users_from_its_config_file_and_flags_win() {
    let alice = TempPath::with("server-users-file", "# operators\n\nalice:a-pass\n");
    let bob = TempPath::with("server-users-flag", "bob:b-pass\n");
    let from_file = ipc_endpoint("server-config-bind");
    let config = TempPath::with(
        "server-config.toml",
        &format!("bind = [\"{from_file}\"]\nusers = \"{}\"\n", alice.as_str()),
    );
    {
        let (_server, ready) = Process::start(SERVER, &["--config", config.as_str()]);
        assert_eq!(ready, format!("ready bind={from_file}"));
        let mut client = client_as(&from_file, "alice", "a-pass");
        assert_eq!(client.call(&Echo("file".into())).unwrap(), "file");
        assert_refused(
            client_as(&from_file, "bob", "b-pass").call(&Ping),
            &from_file,
        );
    }
    let from_flag = ipc_endpoint("server-flag-bind");
    let (_server, ready) = Process::start(
        SERVER,
        &[
            "--config",
            config.as_str(),
            "--bind",
            &from_flag,
            "--users",
            bob.as_str(),
        ],
    );
    assert_eq!(ready, format!("ready bind={from_flag}"));
    let mut client = client_as(&from_flag, "bob", "b-pass");
    assert_eq!(client.call(&Echo("flag".into())).unwrap(), "flag");
    assert_refused(
        client_as(&from_flag, "alice", "a-pass").call(&Ping),
        &from_flag,
    );
}

#[test]
fn the_shipped_example_configs_run_once_their_paths_are_overridden_by_flags() {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/deploy");
    let users = TempPath::with("deploy-users", "sensor-1:s3cret\n");

    // server.toml: binds tcp://*:30000 and reads /etc/zmqrpc/users unless told otherwise.
    let agent = ipc_endpoint("deploy-agent");
    let (_agent, ready) = Process::start(
        SERVER,
        &[
            "--config",
            &format!("{deploy}/server.toml"),
            "--bind",
            &agent,
            "--users",
            users.as_str(),
        ],
    );
    assert_eq!(ready, format!("ready bind={agent}"));
    let mut client = client_as(&agent, "sensor-1", "s3cret");
    assert_eq!(client.call(&Echo("deployed".into())).unwrap(), "deployed");

    // proxy.toml: a buffered proxy with a spool, users and upstream credentials, all under
    // /etc and /var/lib unless told otherwise.
    let samples = Samples::default();
    let server = samples
        .server()
        .users(Users::new().with("collector", "c-pass"))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let upstream = TempPath::with("deploy-upstream", "collector:c-pass\n");
    let spool = TempPath::new("deploy-spool");
    let input = ipc_endpoint("deploy-proxy");
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--config",
            &format!("{deploy}/proxy.toml"),
            "--in",
            &input,
            "--out",
            &server_endpoint,
            "--users",
            users.as_str(),
            "--credentials",
            upstream.as_str(),
            "--spool",
            spool.as_str(),
        ],
    );
    assert_eq!(ready_field(&ready, "in"), [input.as_str()]);
    let mut sensor = client_as(&input, "sensor-1", "s3cret");
    for seq in 0..3 {
        sensor.call(&Sample { seq, value: 1.0 }).unwrap(); // acknowledged once spooled
    }
    assert!(spool.0.exists(), "the flag's spool is used");
    assert_eq!(
        samples.wait_for_delivered(3, secs(5)),
        [0, 1, 2],
        "{:?}",
        samples.seqs()
    );
}

// ---------------------------------------------------------------------------------------
// Users files and credentials.

#[test]
fn users_files_let_the_right_password_in_and_refuse_a_wrong_one() {
    let users = TempPath::with(
        "users",
        "# site A\n\nsensor-1:s3cret\r\nops:correct:horse\n",
    );
    let agent = ipc_endpoint("users-agent");
    let (_agent, _) = Process::start(SERVER, &["--bind", &agent, "--users", users.as_str()]);
    let mut ops = client_as(&agent, "ops", "correct:horse"); // the password is all after the first `:`
    assert_eq!(ops.call(&Ping).unwrap().version, env!("CARGO_PKG_VERSION"));
    let mut sensor = client_as(&agent, "sensor-1", "s3cret"); // CRLF line ending
    assert_eq!(sensor.call(&Echo("in".into())).unwrap(), "in");
    assert_refused(client_as(&agent, "ops", "correct").call(&Ping), &agent);
    assert_refused(client_as(&agent, "nobody", "s3cret").call(&Ping), &agent);
    let mut anonymous = RpcClient::builder()
        .req(&agent)
        .timeout(secs(5))
        .connect()
        .unwrap();
    assert!(matches!(
        anonymous.call(&Ping),
        Err(CallError::AuthFailed { .. })
    ));

    let (server, running) = library_server(None);
    let input = ipc_endpoint("users-proxy");
    let (_proxy, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &input,
            "--out",
            &server,
            "--users",
            users.as_str(),
        ],
    );
    assert_eq!(
        client_as(&input, "sensor-1", "s3cret")
            .call(&Add(2, 3))
            .unwrap(),
        5
    );
    assert_refused(
        client_as(&input, "sensor-1", "S3CRET").call(&Add(2, 3)),
        &input,
    );
    assert_eq!(running.stats().snapshot().receiver.received, 1);
}

#[test]
fn the_binaries_refuse_files_of_secrets_open_to_others_or_naming_a_user_twice() {
    let secret = "ops:never-printed\n";
    let open_users = TempPath::with_mode("open-users", secret, 0o644);
    let open_credentials = TempPath::with_mode("open-credentials", secret, 0o640);
    let twice = TempPath::with("twice-users", "ops:a\nsensor:b\nops:never-printed\n");
    let agent = ipc_endpoint("secrets-agent");
    let input = ipc_endpoint("secrets-proxy");
    type Case<'a> = (&'a str, Vec<&'a str>, i32, String);
    let cases: [Case; 5] = [
        (
            SERVER,
            vec!["--bind", &agent, "--users", open_users.as_str()],
            1,
            format!(
                "{} holds secrets but group or others may read it (mode 0644)",
                open_users.as_str()
            ),
        ),
        (
            SERVER,
            vec![
                "call",
                "ping",
                "--connect",
                &agent,
                "--credentials",
                open_credentials.as_str(),
            ],
            // `call` could not start: 125, not a count of nodes that failed.
            125,
            format!(
                "{} holds secrets but group or others may read it (mode 0640)",
                open_credentials.as_str()
            ),
        ),
        (
            PROXY,
            vec![
                "--kind",
                "rep2req",
                "--in",
                &input,
                "--out",
                &agent,
                "--users",
                open_users.as_str(),
            ],
            2,
            format!(
                "(mode 0644): refused; make it readable by its owner only (chmod 600 {})",
                open_users.as_str()
            ),
        ),
        (
            PROXY,
            vec![
                "--kind",
                "rep2req",
                "--in",
                &input,
                "--out",
                &agent,
                "--credentials",
                open_credentials.as_str(),
            ],
            2,
            format!("{} holds secrets", open_credentials.as_str()),
        ),
        (
            SERVER,
            vec!["--bind", &agent, "--users", twice.as_str()],
            1,
            "users file line 3 names user \"ops\" again (first on line 1)".to_owned(),
        ),
    ];
    for (program, args, code, said) in cases {
        let out = bin(program, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(&said), "{args:?}: {stderr}");
        assert!(!stderr.contains("never-printed"), "{stderr}");
    }
}

#[test]
fn the_binaries_serve_and_forward_only_what_a_permissions_file_allows() {
    let users = TempPath::with("perm-users", "ops:o-pass\nsensor:s-pass\n");
    let rules = TempPath::with(
        "perm-rules",
        "# the agent's commands\nops any *\n* call zmqrpc.node.ping\n",
    );
    let agent = ipc_endpoint("perm-agent");
    let (_agent, _) = Process::start(
        SERVER,
        &[
            "--bind",
            &agent,
            "--users",
            users.as_str(),
            "--permissions",
            rules.as_str(),
        ],
    );
    let mut ops = client_as(&agent, "ops", "o-pass");
    assert_eq!(ops.call(&Echo("ok".into())).unwrap(), "ok");
    let mut sensor = client_as(&agent, "sensor", "s-pass");
    assert_eq!(
        sensor.call(&Ping).unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    match sensor.call(&Echo("no".into())) {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(error.code, ErrorCode::Forbidden);
            assert!(
                error.message.contains("\"sensor\" may not call agent.echo"),
                "{error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The CLI says so and exits 1.
    let out = call_echo(
        &agent,
        "no",
        None,
        &[("ZMQRPC_USER", "sensor"), ("ZMQRPC_PASSWORD", "s-pass")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not call"));

    // A proxy's input: exact names only (it sees keys).
    let proxy_rules = TempPath::with("perm-proxy-rules", "sensor call zmqrpc.node.ping\n");
    let input = ipc_endpoint("perm-proxy");
    let (_proxy, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &input,
            "--out",
            &agent,
            "--users",
            users.as_str(),
            "--permissions",
            proxy_rules.as_str(),
            "--credentials",
            TempPath::with("perm-upstream", "ops:o-pass\n").as_str(),
        ],
    );
    let mut sensor = client_as(&input, "sensor", "s-pass");
    assert_eq!(
        sensor.call(&Ping).unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    match sensor.call(&Echo("no".into())) {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }
    // A bad rule is refused at start, naming its line.
    let bad = TempPath::with("perm-bad", "ops any *\nops sometimes zmqrpc.node.ping\n");
    let out = bin(
        SERVER,
        &[
            "--bind",
            &ipc_endpoint("perm-bad"),
            "--permissions",
            bad.as_str(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("permissions line 2"));
}

/// `zmqrpc-server call echo TEXT` against `endpoint`.
fn call_echo(
    endpoint: &str,
    text: &str,
    credentials: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let timeout = secs(5).as_millis().to_string();
    let mut call = bin(
        SERVER,
        &[
            "call",
            "echo",
            text,
            "--connect",
            endpoint,
            "--timeout",
            &timeout,
        ],
    );
    if let Some(file) = credentials {
        call.args(["--credentials", file]);
    }
    call.envs(env.iter().copied());
    call.output().unwrap()
}

#[test]
fn server_call_presents_credentials_from_a_file_or_the_environment() {
    let users = TempPath::with("call-users", "ops:hunter2\n");
    let right = TempPath::with("call-right", "ops:hunter2\n");
    let wrong = TempPath::with("call-wrong", "ops:hunter3\n");
    let agent = ipc_endpoint("call-agent");
    let (_agent, _) = Process::start(SERVER, &["--bind", &agent, "--users", users.as_str()]);
    let right_env = [("ZMQRPC_USER", "ops"), ("ZMQRPC_PASSWORD", "hunter2")];
    let wrong_env = [("ZMQRPC_USER", "ops"), ("ZMQRPC_PASSWORD", "hunter3")];

    let answered = |out: Output, text: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{text}\n"));
    };
    let refused = |out: Output, why: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(out.stdout.is_empty());
        assert!(
            stderr.contains(&format!("{agent} refused the client: {why}")),
            "{stderr}"
        );
    };
    answered(call_echo(&agent, "file", Some(right.as_str()), &[]), "file");
    refused(
        call_echo(&agent, "x", Some(wrong.as_str()), &[]),
        "credentials refused",
    );
    answered(call_echo(&agent, "env", None, &right_env), "env");
    refused(
        call_echo(&agent, "x", None, &wrong_env),
        "credentials refused",
    );
    // The file comes first.
    answered(
        call_echo(&agent, "both", Some(right.as_str()), &wrong_env),
        "both",
    );
    refused(
        call_echo(&agent, "x", Some(wrong.as_str()), &right_env),
        "credentials refused",
    );
    // Neither: nothing presented, and the server will not talk without.
    refused(
        call_echo(&agent, "x", None, &[]),
        "security handshake failed",
    );
    // Half a pair is a mistake, said as such (it used to mean "no credentials").
    for (half, missing) in [
        (("ZMQRPC_USER", "ops"), "ZMQRPC_PASSWORD is not"),
        (("ZMQRPC_PASSWORD", "hunter2"), "ZMQRPC_USER is not"),
    ] {
        let out = call_echo(&agent, "x", None, &[half]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(out.stdout.is_empty());
        assert!(stderr.contains(missing), "{stderr}");
    }
}

#[test]
fn a_proxy_presents_credentials_from_a_file_or_the_environment() {
    let (server, running) = library_server(Some(Users::new().with("carol", "c-pass")));
    let right = TempPath::with("proxy-right", "carol:c-pass\n");
    /// The `--credentials` file, the environment, and whether the server accepts the proxy.
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], bool);
    let cases: [Case; 4] = [
        (Some(right.as_str()), &[], true),
        (
            None,
            &[("ZMQRPC_USER", "carol"), ("ZMQRPC_PASSWORD", "c-pass")],
            true,
        ),
        (
            None,
            &[("ZMQRPC_USER", "carol"), ("ZMQRPC_PASSWORD", "nope")],
            false,
        ),
        // The file comes first.
        (
            Some(right.as_str()),
            &[("ZMQRPC_USER", "carol"), ("ZMQRPC_PASSWORD", "nope")],
            true,
        ),
    ];
    let mut served = 0;
    for (credentials, env, accepted) in cases {
        let input = ipc_endpoint("proxy-credentials");
        let mut proxy = bin(
            PROXY,
            &["--kind", "rep2req", "--in", &input, "--out", &server],
        );
        if let Some(file) = credentials {
            proxy.args(["--credentials", file]);
        }
        proxy.envs(env.iter().copied());
        let (_proxy, _) = Process::spawn(proxy);
        let result = client(&input).call(&Add(1, 2));
        if accepted {
            assert_eq!(result.unwrap(), 3, "{credentials:?} {env:?}");
            served += 1;
        } else {
            // The downstream refused the proxy, which tells the caller.
            match result {
                Err(CallError::Remote { error, .. }) => {
                    assert_eq!(error.code, ErrorCode::Unavailable);
                    assert!(error.message.contains("credentials refused"), "{error:?}");
                }
                other => panic!("{env:?}: {other:?}"),
            }
        }
    }
    assert_eq!(running.stats().snapshot().receiver.received, served);
}

// ---------------------------------------------------------------------------------------
// Signals.

#[test]
fn sigint_stops_both_binaries_cleanly() {
    let agent = ipc_endpoint("sigint-agent");
    let (mut agent_process, _) = Process::start(SERVER, &["--bind", &agent]);
    let input = ipc_endpoint("sigint-proxy");
    let (mut proxy, _) = Process::start(
        PROXY,
        &["--kind", "rep2req", "--in", &input, "--out", &agent],
    );
    assert_eq!(client(&input).call(&Echo("up".into())).unwrap(), "up");
    for process in [&mut proxy, &mut agent_process] {
        process.signal(libc::SIGINT);
        assert_eq!(process.wait(secs(1)), Some(0));
        assert!(process.wait_for_log("stopped", secs(1)));
    }
}

/// A downstream that answers only when told: a ROUTER socket on a fresh endpoint.
struct Downstream {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    endpoint: String,
}

impl Downstream {
    fn bind() -> Downstream {
        Downstream::bind_at(ipc_endpoint("downstream"))
    }

    fn bind_at(endpoint: String) -> Downstream {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::ROUTER).unwrap();
        socket.set_linger(0).unwrap();
        // A REQ that has been trying to reach a dead endpoint may be backing off for seconds.
        socket.set_rcvtimeo(secs(10).as_millis() as i32).unwrap();
        socket.bind(&endpoint).unwrap();
        Downstream {
            _ctx: ctx,
            socket,
            endpoint,
        }
    }

    /// The next request (bounded wait): the REQ peer's routing id and the frame.
    fn take_request(&self) -> (Vec<u8>, Vec<u8>) {
        let parts = self
            .socket
            .recv_multipart(0)
            .expect("no request downstream");
        match <[Vec<u8>; 3]>::try_from(parts) {
            Ok([id, empty, request]) if empty.is_empty() => (id, request),
            other => panic!("{other:?}"),
        }
    }
}

/// A rep2req proxy whose downstream holds a call: it would wait up to a minute for the
/// answer. Returns the proxy, its input and the held request.
fn proxy_with_a_call_in_flight(
    downstream: &Downstream,
    call: impl FnOnce(String) + Send + 'static,
) -> (Process, Vec<u8>, Vec<u8>) {
    let input = ipc_endpoint("held-in");
    let (proxy, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &input,
            "--out",
            &downstream.endpoint,
            "--timeout",
            "60000",
        ],
    );
    std::thread::spawn(move || call(input));
    let (id, request) = downstream.take_request();
    (proxy, id, request)
}

/// Regression: a rep2req proxy waiting for its downstream made SIGTERM wait out the whole
/// timeout (4.7 s of 5). The stop gives the wait up: the caller is told, the proxy exits.
#[test]
fn sigterm_during_a_call_to_a_silent_downstream_exits_at_once() {
    for (name, signal) in [("SIGTERM", libc::SIGTERM), ("SIGINT", libc::SIGINT)] {
        let downstream = Downstream::bind();
        let (answer_tx, answer_rx) = mpsc::channel();
        let (mut proxy, _id, _request) = proxy_with_a_call_in_flight(&downstream, move |input| {
            let _ = answer_tx.send(client(&input).call(&Add(40, 2)));
        });
        let started = Instant::now();
        proxy.signal(signal);
        assert_eq!(proxy.wait(secs(1)), Some(0), "{name}");
        assert!(
            started.elapsed() < secs(1),
            "{name}: {:?}",
            started.elapsed()
        );
        // The caller got an answer before the proxy went: unavailable, not silence.
        match answer_rx.recv_timeout(secs(2)).unwrap() {
            Err(CallError::Remote { error, .. }) => {
                assert_eq!(error.code, ErrorCode::Unavailable, "{name}");
                assert!(error.message.contains("stopped"), "{}", error.message);
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// The same through a downstream that is not there: the request waits in the proxy's REQ
/// for an endpoint nobody listens on (until the downstream appears, and then it is gone).
#[test]
fn sigterm_ends_a_call_waiting_for_a_dead_downstream_and_exits_within_a_second() {
    let dead = dead_endpoint();
    let input = ipc_endpoint("sigterm-in");
    let (mut proxy, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &input,
            "--out",
            &dead,
            "--timeout",
            "5000",
        ],
    );
    let (answer_tx, answer_rx) = mpsc::channel();
    let caller_input = input.clone();
    std::thread::spawn(move || {
        let mut caller = RpcClient::builder()
            .req(&caller_input)
            .timeout(secs(20))
            .connect()
            .unwrap();
        let _ = answer_tx.send(caller.call(&Add(1, 2)));
    });
    // So that the signal cannot overtake the call, a downstream appears at the dead endpoint
    // just long enough to take the request, and is gone again: the proxy now waits for an
    // answer that will not come (for its 5 s timeout, if nothing stops it).
    {
        let downstream = Downstream::bind_at(dead.clone());
        downstream.take_request();
    }
    let signalled = Instant::now();
    proxy.signal(libc::SIGTERM);
    let code = proxy.wait(secs(1));
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "still running after {took:?}");
    assert!(took < secs(1), "{took:?}");
    // The caller was answered, not left waiting for its own 20 s timeout.
    match answer_rx.recv_timeout(secs(1)) {
        Ok(Err(CallError::Remote { error, .. })) => {
            assert_eq!(error.code, ErrorCode::Unavailable, "{error:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(proxy.wait_for_log("proxy.failed=1", secs(1)));
}

/// The binaries' signal handling, in a child process whose stop never completes (nothing
/// listens to its `Shutdown`): the first SIGINT asks for the stop, the second exits at once
/// with code 1. Every stop of the real binaries is now prompt, so only a child built for it
/// can show the second signal at work.
#[test]
fn a_second_signal_while_stopping_exits_at_once() {
    let exe = std::env::current_exe().unwrap();
    let mut child = command(exe.to_str().unwrap());
    child
        .args([
            "--ignored",
            "--exact",
            "binaries::signal_child_whose_stop_never_ends",
            "--nocapture",
        ])
        .env("ZMQRPC_SIGNAL_CHILD", "1")
        .env("RUST_LOG", "info");
    let (mut process, _) = Process::spawn(child);
    process.signal(libc::SIGINT);
    assert!(process.wait_for_log("signal 2: stopping", secs(5)));
    assert_eq!(process.wait(ms(300)), None, "the stop is still under way");
    let started = Instant::now();
    process.signal(libc::SIGINT);
    assert_eq!(process.wait(secs(1)), Some(1));
    assert!(process.wait_for_log("signal 2 again: exiting now", secs(1)));
    assert!(started.elapsed() < secs(1), "{:?}", started.elapsed());
}

/// The child of `a_second_signal_while_stopping_exits_at_once`; does nothing on its own.
#[test]
#[ignore = "run as a child process by a_second_signal_while_stopping_exits_at_once"]
fn signal_child_whose_stop_never_ends() {
    if std::env::var_os("ZMQRPC_SIGNAL_CHILD").is_none() {
        return;
    }
    zmqrpc::cli::init_logging(0);
    let builder = zmqrpc::transport::Receiver::builder();
    let shutdown = builder.shutdown();
    let notifier = zmqrpc::systemd::Notifier::from_env();
    let _guard = zmqrpc::cli::stop_on_signals(shutdown.clone(), &notifier).unwrap();
    println!("ready");
    // A stop that never completes: waits (bounded) for the request, then hangs on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::process::exit(3); // never reached in the test: the second signal ends it first
}

// ---------------------------------------------------------------------------------------
// The one-way proxy kinds.

#[test]
fn sub2req_forwards_a_publishers_notifications_to_a_server() {
    let (mut sensor, sensor_endpoint) = publishing_client(None);
    let samples = Samples::default();
    let server = samples.server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--kind",
            "sub2req",
            "--in",
            &sensor_endpoint,
            "--out",
            &server_endpoint,
        ],
    );
    // Regression: a proxy that connects on both sides printed `ready in= out=`.
    assert_eq!(
        ready,
        format!("ready in={sensor_endpoint} out={server_endpoint}")
    );

    for seq in 0..5 {
        sensor.notify(&Sample { seq, value: 0.5 }).unwrap();
    }
    // Held by the publisher until the proxy subscribes.
    assert!(attached(&mut sensor));
    assert_eq!(samples.wait_for(5, secs(5)), [0, 1, 2, 3, 4]);
}

#[test]
fn sub2pub_relays_a_publishers_notifications_to_a_subscribing_server() {
    let (mut sensor, sensor_endpoint) = publishing_client(None);
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--kind",
            "sub2pub",
            "--in",
            &sensor_endpoint,
            "--out",
            "tcp://127.0.0.1:*",
        ],
    );
    let relay = ready_field(&ready, "out");
    assert_eq!(relay.len(), 1, "{ready}");
    assert!(!relay[0].ends_with(":*"), "{ready}"); // the port actually bound
    let samples = Samples::default();
    let _server = samples
        .server()
        .subscribe(&relay[0])
        .bind()
        .unwrap()
        .spawn()
        .unwrap();

    for seq in 0..5 {
        sensor.notify(&Sample { seq, value: 0.5 }).unwrap();
    }
    assert!(attached(&mut sensor));
    // The relay holds what arrives before the server subscribes.
    assert_eq!(samples.wait_for(5, secs(5)), [0, 1, 2, 3, 4]);
}

#[test]
fn rep2pub_acknowledges_calls_and_publishes_them_to_a_subscribing_server() {
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2pub",
            "--in",
            "tcp://127.0.0.1:*",
            "--out",
            "tcp://127.0.0.1:*",
        ],
    );
    let (input, output) = (ready_field(&ready, "in"), ready_field(&ready, "out"));
    assert_eq!((input.len(), output.len()), (1, 1), "{ready}");
    let samples = Samples::default();
    let _server = RpcServer::builder()
        .register(samples.service())
        .unwrap()
        .subscribe(&output[0])
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let mut client = client(&input[0]);
    for seq in 0..3 {
        client.call(&Sample { seq, value: 1.0 }).unwrap(); // the acknowledgement: ()
    }
    assert_eq!(samples.wait_for(3, secs(5)), [0, 1, 2]);
}

/// Regression: a proxy said nothing of a failure until it stopped (at most a counter line a
/// minute while busy); now the log says so as it happens, rate-limited.
#[test]
fn a_proxy_logs_failures_as_they_happen() {
    let input = ipc_endpoint("failing-in");
    let nowhere = ipc_endpoint("nobody-there");
    let (proxy, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &input,
            "--out",
            &nowhere,
            "--timeout",
            "200",
        ],
    );
    let mut client = client(&input);
    assert!(matches!(
        client.call(&Add(1, 1)),
        Err(zmqrpc::transport::CallError::Remote { .. })
    ));
    // The warning names the command (regression: it said only "not forwarded").
    let expected = format!("command {} not forwarded", <Add as zmqrpc::Command>::KEY);
    assert!(proxy.wait_for_log(&expected, secs(5)));
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.set_rcvtimeo(5_000 * slack() as i32).unwrap();
    req.connect(&input).unwrap();
    // Past the rate limit of one line a second: the next failure is told too.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    req.send(&b"garbage"[..], 0).unwrap();
    req.recv_bytes(0).unwrap();
    assert!(proxy.wait_for_log("refused a message", secs(5)));
}

/// Regression: a proxy whose SUB input its publisher refuses (wrong credentials) said
/// nothing and counted nothing: the link looked idle. It warns now, naming the endpoint.
#[test]
fn a_proxy_refused_by_its_publisher_says_so() {
    let users = zmqrpc::transport::Users::new().with("sensor", "s3cret");
    let (mut publisher, endpoint) = publishing_client(Some(users));
    let credentials = TempPath::with_mode("refused-credentials", "sensor:wrong\n", 0o600);
    let output = ipc_endpoint("refused-out");
    let (proxy, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "sub2pub",
            "--in",
            &endpoint,
            "--out",
            &output,
            "--credentials",
            credentials.as_str(),
        ],
    );
    // The publisher reads its monitor as it is used.
    let stats = publisher.publisher_stats().unwrap();
    assert!(eventually(secs(5), || {
        publisher.flush().unwrap();
        stats.snapshot().refused > 0
    }));
    let line = std::iter::from_fn(|| proxy.log.recv_timeout(secs(5)).ok())
        .find(|line| line.contains("refused this subscriber"))
        .expect("a warning on the subscribing side");
    assert!(line.contains(&format!("SUB {endpoint}")), "{line}");
    assert!(line.contains("credentials refused"), "{line}");
}

/// The library's proxies count the refusals on their input (`input_stats`).
#[test]
fn a_library_proxy_counts_the_refusals_of_its_publisher() {
    let users = zmqrpc::transport::Users::new().with("sensor", "s3cret");
    let (_publisher, endpoint) = publishing_client(Some(users));
    let proxy = zmqrpc::transport::Proxy::builder(zmqrpc::transport::ProxyKind::Sub2Pub)
        .subscribe(&endpoint)
        .input_credentials(zmqrpc::transport::Credentials::new("sensor", "wrong"))
        .output(ipc_endpoint("refused-lib-out"))
        .bind()
        .unwrap();
    let input = proxy.input_stats();
    let _running = proxy.spawn().unwrap();
    assert!(
        eventually(secs(5), || input.snapshot().sub_refused > 0),
        "{:?}",
        input.snapshot()
    );
}

/// Regression: the buffered proxy's warning for a request its downstream refused said only
/// "the downstream refused a request", naming neither the command nor what was said. It
/// names both now, as its warning for a failed delivery names the command.
#[test]
fn the_buffered_proxy_names_the_command_and_what_the_downstream_said() {
    use zmqrpc::Command as _;
    let (server, _running) = library_server(None);
    let input = ipc_endpoint("buffered-words");
    let (proxy, _) = Process::start(
        PROXY,
        &["--kind", "buffered", "--in", &input, "--out", &server],
    );
    // Acknowledged by the proxy, then refused by the server: it serves no `Unregistered`.
    client(&input).call(&Unregistered).unwrap();
    let key = Unregistered::KEY.to_string();
    let line = std::iter::from_fn(|| proxy.log.recv_timeout(secs(5)).ok())
        .find(|line| line.contains("refused"))
        .expect("a warning for the refused request");
    assert!(line.contains(&format!("command {key}")), "{line}");
    assert!(line.contains("no service for key"), "{line}");
}
