//! The built-in commands and their answers: [`Ping`], [`GetStats`], [`Describe`].

use serde::{Deserialize, Serialize};
use zmqrpc_core::Command;

use super::schema::Schema;

/// Is the node there, and what is it? Answered with a [`Pong`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ping;

impl Command for Ping {
    const NAME: &'static str = "zmqrpc.node.ping";
    type Response = Pong;
}

/// The answer to [`Ping`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// The zmqrpc version the node runs.
    pub version: String,
    /// What kind of node it is: `server`, `rep2req`, `rep2pub`, `sub2req`, `sub2pub`,
    /// `buffered` or `rep2serial` (or what its builder was told).
    pub role: String,
    /// Milliseconds since the node was bound.
    pub uptime_ms: u64,
}

/// Asks for every counter of the node. Answered with [`NodeStats`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetStats;

impl Command for GetStats {
    const NAME: &'static str = "zmqrpc.node.stats";
    type Response = NodeStats;
}

/// A node's counters at one moment: every socket, queue, spool and device link it has, and
/// the bounds it keeps.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    /// What [`Ping`] answers: version, role and uptime.
    pub pong: Pong,
    /// The counters, by what they count (`input`, `dispatch`, `output`, `proxy`, `bridge`,
    /// `budget`, `loop`).
    pub sections: Vec<Section>,
    /// The bounds the node keeps (`process_budget_bytes`, `max_body_bytes`, `capacity`, …).
    pub limits: Vec<Counter>,
}

impl NodeStats {
    /// The section named `name`, if the node has one.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|section| section.name == name)
    }

    /// The value of counter `counter` of section `section`.
    pub fn counter(&self, section: &str, counter: &str) -> Option<u64> {
        self.section(section)?.counter(counter)
    }

    /// The bound named `name`.
    pub fn limit(&self, name: &str) -> Option<u64> {
        find(&self.limits, name)
    }

    /// Every counter, named `section.counter` (`input.received`, `proxy.forwarded`, …), in
    /// the order of the sections: for a status line or a log.
    pub fn counters(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.sections.iter().flat_map(|section| {
            section
                .counters
                .iter()
                .map(move |counter| (format!("{}.{}", section.name, counter.name), counter.value))
        })
    }
}

/// One part of a node's counters: a socket or a loop, and the endpoints it serves.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// What it counts: `input`, `dispatch`, `output`, `proxy`, `bridge`, `budget`, `loop`.
    pub name: String,
    /// The endpoints of the sockets counted (bound, or connected to), if any.
    pub endpoints: Vec<String>,
    /// The counters, in the order they are declared.
    pub counters: Vec<Counter>,
}

impl Section {
    /// A section of counters read from a snapshot's `named()`.
    pub fn new<'a>(
        name: &str,
        endpoints: &[String],
        counters: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Section {
        Section {
            name: name.to_owned(),
            endpoints: endpoints.to_vec(),
            counters: counters
                .into_iter()
                .map(|(name, value)| Counter::new(name, value))
                .collect(),
        }
    }

    /// The value of counter `name`.
    pub fn counter(&self, name: &str) -> Option<u64> {
        find(&self.counters, name)
    }
}

/// A named number: a counter, a gauge or a bound.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Its name, as the field of its snapshot is named (`received`, `forwarded`, …).
    pub name: String,
    /// Its value.
    pub value: u64,
}

impl Counter {
    /// The counter `name` at `value`.
    pub fn new(name: &str, value: u64) -> Counter {
        Counter {
            name: name.to_owned(),
            value,
        }
    }
}

fn find(counters: &[Counter], name: &str) -> Option<u64> {
    counters
        .iter()
        .find(|counter| counter.name == name)
        .map(|counter| counter.value)
}

/// Asks which commands the node answers. Answered with a [`Description`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Describe;

impl Command for Describe {
    const NAME: &'static str = "zmqrpc.node.describe";
    type Response = Description;
}

/// The commands a node answers: a server its services and the built-ins, a proxy or a
/// bridge the built-ins (it forwards everything else without knowing what it is).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// What [`Ping`] answers: version, role and uptime.
    pub pong: Pong,
    /// The commands, by name.
    pub commands: Vec<CommandInfo>,
}

impl Description {
    /// The command named `name`, if the node answers it.
    pub fn command(&self, name: &str) -> Option<&CommandInfo> {
        self.commands.iter().find(|command| command.name == name)
    }
}

/// One command a node answers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo {
    /// Its name ([`Command::NAME`]).
    pub name: String,
    /// Its wire key ([`Command::KEY`]).
    pub key: u64,
    /// The shape of the request, if the node could tell it (see [`Schema`]).
    pub request: Result<Schema, String>,
    /// The shape of the response.
    pub response: Result<Schema, String>,
}

/// The built-in commands' names: what a permission rule names to allow them (`zmqrpc.node.*`
/// allows all three; `*` does too).
pub const BUILTIN_NAMES: [&str; 3] = [Ping::NAME, GetStats::NAME, Describe::NAME];

/// The pyzmqrpc3 class names a Python peer calls the built-ins by: `Ping`, `Stats`,
/// `Describe` (map them with [`pyzmqrpc3_classes`]).
#[cfg(feature = "pyzmqrpc3")]
pub const PYZMQRPC3_CLASSES: [&str; 3] = ["Ping", "Stats", "Describe"];

/// `dialect` with the built-ins' pyzmqrpc3 class names ([`PYZMQRPC3_CLASSES`]), so a
/// pyzmqrpc3 client calls them by class as it calls any command.
#[cfg(feature = "pyzmqrpc3")]
pub fn pyzmqrpc3_classes(dialect: crate::dialect::Pyzmqrpc3) -> crate::dialect::Pyzmqrpc3 {
    let [ping, stats, describe] = PYZMQRPC3_CLASSES;
    dialect
        .class::<Ping>(ping)
        .class::<GetStats>(stats)
        .class::<Describe>(describe)
}
