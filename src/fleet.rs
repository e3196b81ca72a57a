//! One command line for many nodes: a command called by name, with JSON arguments, on every
//! node of a fleet at once, within one deadline (`zmqrpc-server call`).
//!
//! A built-in command (`zmqrpc.node.ping`, `.stats`, `.describe`, and the agent's `info` and
//! `echo`) is called with its own type;
//! any other is looked up in the node's `Describe` first, its arguments written from JSON by
//! the schema the node gave, and its answer read back as JSON the same way. Each node is asked
//! on a thread of a bounded pool, on a REQ socket of its own, waiting at most what is left of
//! the one deadline; what is not answered by then is a failure. Nothing here is a stable API:
//! the binaries use it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::agent::{Echo, GetNodeInfo};
use crate::frame::{Header, HEADER_LEN};
use crate::transport::auth::{KeyPair, PublicKey};
use crate::transport::dialect::{interpret, Addressee, Dialect, Interpretation, Says};
use crate::transport::node::{CommandInfo, Describe, GetStats, JsonError, Ping, Schema};
use crate::transport::presence::GetRoster;
use crate::transport::{
    zmq, CallError, Credentials, Native, RequestError, Requester, SocketOptions,
};
use crate::{Command, Key, RemoteError};

/// The largest call the fleet command line writes.
const MAX_CALL: usize = 1 << 20;

/// One node of a fleet: what it is called in the output and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its name (its endpoint, unless the fleet file names it).
    pub name: String,
    /// Where it listens.
    pub endpoint: String,
    /// Its CURVE public key, if the fleet file gives one (else `--server-key`).
    pub server_key: Option<PublicKey>,
}

impl Node {
    /// A node known by its endpoint only.
    pub fn at(endpoint: &str) -> Node {
        Node {
            name: endpoint.to_owned(),
            endpoint: endpoint.to_owned(),
            server_key: None,
        }
    }
}

/// Reads a fleet file: one node a line, `ENDPOINT`, `NAME ENDPOINT` or `NAME ENDPOINT
/// PUBLIC-KEY-FILE` (a CURVE node's own key, relative to the file); blank lines and `#`
/// comments skipped.
pub fn read_fleet(path: &Path) -> Result<Vec<Node>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read fleet {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut nodes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = |what: String| format!("fleet {} line {}: {what}", path.display(), index + 1);
        let node = match words[..] {
            [endpoint] => Node::at(endpoint),
            [name, endpoint] => Node {
                name: name.to_owned(),
                ..Node::at(endpoint)
            },
            [name, endpoint, key] => Node {
                name: name.to_owned(),
                endpoint: endpoint.to_owned(),
                server_key: Some(
                    PublicKey::from_file(base.join(key)).map_err(|e| bad(format!("{key}: {e}")))?,
                ),
            },
            _ => return Err(bad("not `[NAME] ENDPOINT [PUBLIC-KEY-FILE]`".to_owned())),
        };
        if let Some(first) = nodes.iter().position(|n: &Node| n.name == node.name) {
            return Err(bad(format!(
                "{:?} again (first on line {})",
                node.name,
                first + 1
            )));
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(format!("fleet {} names no node", path.display()));
    }
    Ok(nodes)
}

/// What to call on every node.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `zmqrpc.node.ping`.
    Ping,
    /// `zmqrpc.node.stats`.
    Stats,
    /// `zmqrpc.node.describe`.
    Describe,
    /// The node agent's `agent.node_info`.
    Info,
    /// The node agent's `agent.echo`.
    Echo(String),
    /// A roster's `zmqrpc.presence.roster`: who is up.
    Roster,
    /// Any command the node describes, with its arguments as JSON.
    Named {
        /// The command's name.
        name: String,
        /// Its arguments (`null` for a command without fields).
        args: Value,
    },
}

impl Request {
    /// The command's name.
    pub fn name(&self) -> &str {
        match self {
            Request::Ping => Ping::NAME,
            Request::Stats => GetStats::NAME,
            Request::Describe => Describe::NAME,
            Request::Info => GetNodeInfo::NAME,
            Request::Echo(_) => Echo::NAME,
            Request::Roster => GetRoster::NAME,
            Request::Named { name, .. } => name,
        }
    }
}

/// How the fleet is reached: PLAIN credentials, or a CURVE key pair with each node's key.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// A PLAIN user and password, presented to every node.
    pub plain: Option<Credentials>,
    /// This caller's CURVE key pair.
    pub curve_keys: Option<KeyPair>,
    /// The nodes' CURVE key where the fleet file gives none (`--server-key`).
    pub server_key: Option<PublicKey>,
}

impl Access {
    /// What to present to `node`.
    fn credentials(&self, node: &Node) -> Result<Option<Credentials>, Failure> {
        match (&self.curve_keys, node.server_key.or(self.server_key)) {
            (Some(keys), Some(server)) => Ok(Some(Credentials::curve(keys.clone(), server))),
            (Some(_), None) => Err(Failure::NoServerKey),
            (None, _) => Ok(self.plain.clone()),
        }
    }
}

/// What a node answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Its answer, as JSON.
    Value(Value),
    /// A store-and-forward hop took the call on; no answer comes back.
    Accepted,
}

/// Why a node gave no answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The call failed on the way, or the node answered an error.
    Call(CallError),
    /// The node does not answer the command (its `Describe` does not list it).
    NotServed {
        /// The command.
        command: String,
    },
    /// The node cannot tell the command's shape, so its arguments cannot be written.
    NoSchema {
        /// The command.
        command: String,
        /// Why, as the node said.
        why: String,
    },
    /// The arguments do not fit the command's shape.
    BadArguments(JsonError),
    /// The answer does not read as the command's response.
    BadAnswer(String),
    /// CURVE without a key for this node.
    NoServerKey,
    /// The call was sent and no answer came in time.
    Silent {
        /// How long it was waited for.
        after: Duration,
    },
    /// No connection to the node came up (and finished its handshake) in time: nothing
    /// was sent.
    Unreachable {
        /// How long it was waited for.
        waited: Duration,
    },
    /// Not answered within the deadline (the node was still being asked).
    Deadline,
}

impl Failure {
    /// A short word for the table's status column.
    pub fn kind(&self) -> String {
        match self {
            Failure::Call(CallError::Timeout { .. }) => "timeout".to_owned(),
            Failure::Call(CallError::AuthFailed { .. }) => "refused".to_owned(),
            Failure::Call(CallError::Remote { error, .. }) => format!("{:?}", error.code),
            Failure::Call(_) => "failed".to_owned(),
            Failure::NotServed { .. } => "not served".to_owned(),
            Failure::NoSchema { .. } => "no schema".to_owned(),
            Failure::BadArguments(_) => "bad arguments".to_owned(),
            Failure::BadAnswer(_) => "bad answer".to_owned(),
            Failure::NoServerKey => "no key".to_owned(),
            Failure::Unreachable { .. } => "unreachable".to_owned(),
            Failure::Silent { .. } => "timeout".to_owned(),
            Failure::Deadline => "deadline".to_owned(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Call(e) => e.fmt(f),
            Failure::NotServed { command } => write!(f, "the node does not serve {command}"),
            Failure::NoSchema { command, why } => {
                write!(f, "the node cannot tell the shape of {command}: {why}")
            }
            Failure::BadArguments(e) => write!(f, "the arguments do not fit: {e}"),
            Failure::BadAnswer(why) => write!(f, "the answer does not read: {why}"),
            Failure::NoServerKey => f.write_str(
                "CURVE needs the node's public key: a third word on its fleet line, or \
                 --server-key",
            ),
            Failure::Silent { after } => {
                write!(f, "sent, and no answer within {} ms", after.as_millis())
            }
            Failure::Unreachable { waited } => write!(
                f,
                "no connection within {} ms: nothing was sent",
                waited.as_millis()
            ),
            Failure::Deadline => f.write_str("no answer within the deadline"),
        }
    }
}

/// One node's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The node, by its index in the fleet.
    pub node: usize,
    /// What it answered, or why not.
    pub result: Result<Reply, Failure>,
    /// How long it took.
    pub took: Duration,
}

/// How far a fan-out has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Nodes in all.
    pub nodes: usize,
    /// Nodes that answered.
    pub answered: usize,
    /// Nodes that failed.
    pub failed: usize,
}

/// Calls `request` on every node, `parallel` at once at most, all within `within`; one
/// outcome a node, in the fleet's order. `progress` hears how far it has come as outcomes
/// arrive (and every 200 ms).
///
/// A named command is looked up first: every node is asked to `Describe` itself, then each
/// is called with the shape it described — or, for a proxy (which describes only its
/// built-ins and forwards the rest), the shape another node of the fleet described.
pub fn fan_out(
    nodes: &[Node],
    request: &Request,
    access: &Access,
    within: Duration,
    parallel: usize,
    mut progress: impl FnMut(Progress),
) -> Vec<Outcome> {
    let fan = Fan {
        ctx: zmq::Context::new(),
        nodes: nodes.to_vec(),
        access: access.clone(),
        deadline: Instant::now() + within,
        within,
        parallel,
    };
    let Request::Named { name, args } = request else {
        let request = request.clone();
        return fan.run(move |asking| asking.builtin(&request), &mut progress);
    };
    let book = Arc::new(Book::new(name, nodes.len()));
    let args = args.clone();
    fan.run(move |asking| asking.named(&book, &args), &mut progress)
}

/// The shape of a named command, as the first node that served it described it: what a
/// proxy in the same fleet is called with (it describes only its built-ins and forwards the
/// rest).
struct Book {
    name: String,
    found: Mutex<Found>,
    changed: Condvar,
}

struct Found {
    command: Option<CommandInfo>,
    /// Nodes not yet described (or failed to be).
    undescribed: usize,
}

impl Book {
    fn new(name: &str, nodes: usize) -> Book {
        Book {
            name: name.to_owned(),
            found: Mutex::new(Found {
                command: None,
                undescribed: nodes,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Found> {
        self.found.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A node was described (or could not be); `command` is the command if it serves it.
    fn described(&self, command: Option<&CommandInfo>) {
        let mut found = self.lock();
        found.undescribed = found.undescribed.saturating_sub(1);
        if found.command.is_none() {
            found.command = command.cloned();
        }
        self.changed.notify_all();
    }

    /// The command as some node described it, waiting for one until every node has been
    /// described or `deadline`.
    fn wait(&self, deadline: Instant) -> Option<CommandInfo> {
        let mut found = self.lock();
        loop {
            if found.command.is_some() || found.undescribed == 0 {
                return found.command.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            found = self
                .changed
                .wait_timeout(found, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// How a named command is called on one node.
#[derive(Clone, Debug)]
struct Plan {
    key: Key,
    request: Schema,
    response: Schema,
}

/// The roles whose nodes forward the calls they do not answer themselves.
const FORWARDING: [&str; 3] = ["rep2req", "rep2pub", "buffered"];

impl Plan {
    /// How to call `command`, if the node could tell its shapes.
    fn of(command: &CommandInfo) -> Result<Plan, Failure> {
        let no_schema = |why: &String| Failure::NoSchema {
            command: command.name.clone(),
            why: why.clone(),
        };
        Ok(Plan {
            key: Key(command.key),
            request: command.request.as_ref().map_err(no_schema)?.clone(),
            response: command.response.as_ref().map_err(no_schema)?.clone(),
        })
    }
}

/// A fan-out's fleet, access and deadline.
struct Fan {
    ctx: zmq::Context,
    nodes: Vec<Node>,
    access: Access,
    deadline: Instant,
    within: Duration,
    parallel: usize,
}

impl Fan {
    /// Asks every node with `ask`.
    fn run(
        &self,
        ask: impl Fn(&mut Asking<'_>) -> Result<Reply, Failure> + Send + Sync + 'static,
        progress: &mut dyn FnMut(Progress),
    ) -> Vec<Outcome> {
        let shared = Arc::new(Shared {
            nodes: self.nodes.clone(),
            ask: Box::new(ask),
            access: self.access.clone(),
            next: AtomicUsize::new(0),
            deadline: self.deadline,
        });
        let total = shared.nodes.len();
        let (tx, rx) = mpsc::channel();
        for _ in 0..self.parallel.clamp(1, total.max(1)) {
            let (shared, tx, ctx) = (Arc::clone(&shared), tx.clone(), self.ctx.clone());
            // A thread still waiting on a node past the deadline is left behind: its
            // outcome is already counted as missed.
            std::thread::spawn(move || shared.ask_in_turn(&ctx, &tx));
        }
        drop(tx);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.nodes.len()];
        let mut seen = Progress {
            nodes: self.nodes.len(),
            ..Progress::default()
        };
        // A call waits for what is left of the deadline; a little more for its thread to
        // say so.
        let last_word = self.deadline + Duration::from_millis(500);
        let mut heard = 0;
        while heard < total {
            let left = last_word.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(outcome) => {
                    heard += 1;
                    match outcome.result {
                        Ok(_) => seen.answered += 1,
                        Err(_) => seen.failed += 1,
                    }
                    let index = outcome.node;
                    outcomes[index] = Some(outcome);
                    progress(seen);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => progress(seen),
                Err(_) => break,
            }
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(node, outcome)| {
                outcome.unwrap_or(Outcome {
                    node,
                    result: Err(Failure::Deadline),
                    took: self.within,
                })
            })
            .collect()
    }
}

/// How a node is asked, on any thread.
type Ask = Box<dyn Fn(&mut Asking<'_>) -> Result<Reply, Failure> + Send + Sync>;

/// What every asking thread shares.
struct Shared {
    nodes: Vec<Node>,
    ask: Ask,
    access: Access,
    /// The next node to ask.
    next: AtomicUsize,
    deadline: Instant,
}

impl Shared {
    /// Asks nodes in turn until none is left.
    fn ask_in_turn(&self, ctx: &zmq::Context, outcomes: &mpsc::Sender<Outcome>) {
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= self.nodes.len() {
                return;
            }
            let asked = Instant::now();
            let result = match asked >= self.deadline {
                true => Err(Failure::Deadline),
                false => self.ask(ctx, index),
            };
            let outcome = Outcome {
                node: index,
                result,
                took: asked.elapsed(),
            };
            if outcomes.send(outcome).is_err() {
                return;
            }
        }
    }

    fn ask(&self, ctx: &zmq::Context, index: usize) -> Result<Reply, Failure> {
        let node = &self.nodes[index];
        let credentials = self.access.credentials(node)?;
        let endpoints = [node.endpoint.clone()];
        let requester = Requester::connect(ctx, &endpoints, &SocketOptions::default(), credentials)
            .map_err(|e| Failure::Call(CallError::Transport(e)))?;
        let mut asking = Asking {
            requester,
            endpoint: &node.endpoint,
            deadline: self.deadline,
            seq: 0,
        };
        (self.ask)(&mut asking)
    }
}

/// One node being asked.
struct Asking<'a> {
    requester: Requester,
    endpoint: &'a str,
    deadline: Instant,
    seq: u32,
}

impl Asking<'_> {
    /// Sends `call` and returns the answer's bytes, within what is left of the deadline.
    fn exchange(&mut self, call: &[u8]) -> Result<Vec<u8>, Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Deadline);
        }
        self.requester
            .request(call, left)
            .map(|answer| answer.bytes.to_vec())
            .map_err(|e| match e {
                RequestError::NotConnected { waited, .. } => Failure::Unreachable { waited },
                RequestError::Timeout { after, .. } => Failure::Silent { after },
                other => Failure::Call(other.into()),
            })
    }

    fn typed_value<C: Command>(&mut self, command: &C) -> Result<Option<C::Response>, Failure> {
        self.seq += 1;
        let mut call = Vec::new();
        let tag = Native
            .encode_call(self.seq, command, &mut call, MAX_CALL)
            .map_err(|e| Failure::Call(CallError::Encode(e)))?;
        let bytes = self.exchange(&call)?;
        match interpret::<_, C::Response>(&Native, &tag, &bytes) {
            Interpretation::Answer(Ok(response)) => Ok(Some(response)),
            Interpretation::Answer(Err(error)) => Err(self.remote(error)),
            Interpretation::Accepted => Ok(None),
            Interpretation::Stray => Err(Failure::BadAnswer("an answer to another call".into())),
            Interpretation::Unreadable(e) => Err(Failure::BadAnswer(e.to_string())),
        }
    }

    fn typed<C: Command>(&mut self, command: &C) -> Result<Reply, Failure>
    where
        C::Response: Serialize + DeserializeOwned,
    {
        match self.typed_value(command)? {
            Some(response) => serde_json::to_value(response)
                .map(Reply::Value)
                .map_err(|e| Failure::BadAnswer(e.to_string())),
            None => Ok(Reply::Accepted),
        }
    }

    fn remote(&self, error: RemoteError) -> Failure {
        Failure::Call(CallError::Remote {
            endpoint: self.endpoint.to_owned(),
            error: Box::new(error),
        })
    }

    /// A built-in `request`, typed.
    fn builtin(&mut self, request: &Request) -> Result<Reply, Failure> {
        match request {
            Request::Ping => self.typed(&Ping),
            Request::Stats => self.typed(&GetStats),
            Request::Describe => self.typed(&Describe),
            Request::Info => self.typed(&GetNodeInfo),
            Request::Echo(text) => self.typed(&Echo(text.clone())),
            Request::Roster => self.typed(&GetRoster),
            Request::Named { name, .. } => Err(Failure::NotServed {
                command: name.clone(),
            }),
        }
    }

    /// Calls the named command of `book` with `args`: as the node describes it, or, for a
    /// node that forwards what it does not serve, as another node of the fleet does.
    fn named(&mut self, book: &Book, args: &Value) -> Result<Reply, Failure> {
        let description = match self.typed_value(&Describe) {
            Ok(Some(description)) => description,
            Ok(None) => Err(Failure::BadAnswer(
                "Describe was accepted, not answered".into(),
            ))
            .inspect_err(|_| book.described(None))?,
            Err(failure) => {
                book.described(None);
                return Err(failure);
            }
        };
        let own = description.command(&book.name);
        book.described(own);
        let not_served = || Failure::NotServed {
            command: book.name.clone(),
        };
        let command = match own {
            Some(command) => command.clone(),
            None if FORWARDING.contains(&description.pong.role.as_str()) => {
                book.wait(self.deadline).ok_or_else(not_served)?
            }
            None => return Err(not_served()),
        };
        self.call_as(&Plan::of(&command)?, args)
    }

    /// Calls a named command as `plan` says, with `args`.
    fn call_as(&mut self, plan: &Plan, args: &Value) -> Result<Reply, Failure> {
        let body = plan
            .request
            .encode_json(args)
            .map_err(Failure::BadArguments)?;
        self.seq += 1;
        let mut call = vec![0; HEADER_LEN];
        Header::request(self.seq, plan.key)
            .write(&mut call)
            .map_err(|e| Failure::Call(CallError::Encode(e)))?;
        call.extend_from_slice(&body);
        let bytes = self.exchange(&call)?;
        let answer = Native
            .read_answer(&bytes)
            .map_err(|e| Failure::BadAnswer(e.to_string()))?;
        if let Addressee::Call(tag) = answer.to {
            if (tag.seq, tag.key) != (self.seq, plan.key) {
                return Err(Failure::BadAnswer("an answer to another call".into()));
            }
        }
        match answer.says {
            Says::Response(body) => plan
                .response
                .decode_json(body)
                .map(Reply::Value)
                .map_err(|e| Failure::BadAnswer(e.to_string())),
            Says::Accepted => Ok(Reply::Accepted),
            Says::Error(error) => Err(self.remote(error)),
        }
    }
}

/// A one-line summary of an answer to `request`, for the table.
pub fn summary(request: &Request, reply: &Reply) -> String {
    let value = match reply {
        Reply::Accepted => return "accepted (no answer comes back)".to_owned(),
        Reply::Value(value) => value,
    };
    match request {
        Request::Ping => format!(
            "{} {} up {}",
            value["role"].as_str().unwrap_or("?"),
            value["version"].as_str().unwrap_or("?"),
            uptime(value["uptime_ms"].as_u64().unwrap_or(0))
        ),
        Request::Stats => {
            let counters: Vec<String> = value["sections"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|section| {
                    let name = section["name"].as_str().unwrap_or("?").to_owned();
                    section["counters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|c| c["value"].as_u64().is_some_and(|v| v != 0))
                        .map(move |c| {
                            format!(
                                "{name}.{}={}",
                                c["name"].as_str().unwrap_or("?"),
                                c["value"]
                            )
                        })
                })
                .filter(|counter| !counter.starts_with("loop."))
                .collect();
            match counters.is_empty() {
                true => "idle".to_owned(),
                false => counters.join(" "),
            }
        }
        Request::Describe => {
            let names: Vec<&str> = value["commands"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            names.join(" ")
        }
        Request::Echo(_) => value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned),
        Request::Roster => {
            let members = value["members"].as_array().map_or(&[][..], Vec::as_slice);
            let up = members.iter().filter(|m| m["up"] == true).count();
            let down: Vec<&str> = members
                .iter()
                .filter(|m| m["up"] != true)
                .filter_map(|m| m["name"].as_str())
                .collect();
            match down.is_empty() {
                true => format!("{up} up"),
                false => format!("{up} up, {} down: {}", down.len(), down.join(" ")),
            }
        }
        Request::Info | Request::Named { .. } => value.to_string(),
    }
}

/// `ms` as a person reads an uptime.
fn uptime(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{:.1} h", secs as f64 / 3600.0),
        _ => format!("{:.1} d", secs as f64 / 86_400.0),
    }
}

/// The outcomes as a table: one row a node, its name, status, time and answer (or why not).
pub fn table(nodes: &[Node], request: &Request, outcomes: &[Outcome]) -> String {
    let rows: Vec<[String; 4]> = outcomes
        .iter()
        .map(|outcome| {
            let (status, said) = match &outcome.result {
                Ok(reply) => ("ok".to_owned(), summary(request, reply)),
                Err(failure) => (failure.kind(), failure.to_string()),
            };
            let name = nodes.get(outcome.node).map_or("?", |n| n.name.as_str());
            let took = format!("{} ms", outcome.took.as_millis());
            [name.to_owned(), status, took, said]
        })
        .collect();
    let header = ["NODE", "STATUS", "TIME", "ANSWER"].map(str::to_owned);
    let width = |column: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (column, cell) in row.iter().enumerate().take(3) {
            text.push_str(cell);
            let pad = widths[column] + 2 - cell.chars().count();
            text.extend(std::iter::repeat_n(' ', pad));
        }
        text.push_str(&row[3]);
        text.push('\n');
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    text.push_str(&format!(
        "{} of {} answered, {failed} failed\n",
        outcomes.len() - failed,
        outcomes.len()
    ));
    text
}

/// The outcomes as JSON: an array of `{node, endpoint, ok, ms, answer}` or `{…, error: {kind,
/// message}}`.
pub fn json(nodes: &[Node], outcomes: &[Outcome]) -> Value {
    let rows = outcomes.iter().map(|outcome| {
        let node = nodes.get(outcome.node);
        let mut row = serde_json::Map::new();
        row.insert(
            "node".into(),
            node.map_or(Value::Null, |n| n.name.clone().into()),
        );
        row.insert(
            "endpoint".into(),
            node.map_or(Value::Null, |n| n.endpoint.clone().into()),
        );
        row.insert("ok".into(), outcome.result.is_ok().into());
        row.insert("ms".into(), (outcome.took.as_millis() as u64).into());
        match &outcome.result {
            Ok(Reply::Value(value)) => row.insert("answer".into(), value.clone()),
            Ok(Reply::Accepted) => row.insert("accepted".into(), true.into()),
            Err(failure) => row.insert(
                "error".into(),
                serde_json::json!({"kind": failure.kind(), "message": failure.to_string()}),
            ),
        };
        Value::Object(row)
    });
    Value::Array(rows.collect())
}
