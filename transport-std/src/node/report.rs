//! [`NodeReport`]: what a node says about itself, gathered in one place for its built-in
//! commands, the binaries' status line and their metrics.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use zmqrpc_core::{Command, Key};

use super::commands::{CommandInfo, Counter, Description, NodeStats, Pong, Section};
use super::schema::Schema;
use crate::budget;

/// Adds a node's sections to a [`NodeStats`]: a closure over its live counters.
type Source = Box<dyn Fn(&mut Vec<Section>) + Send + Sync>;

/// A command a node answers, its schemas traced when first asked for.
struct Described {
    name: &'static str,
    key: Key,
    request: SchemaOf,
    response: SchemaOf,
}

/// What one node (a server, a proxy, a bridge) says about itself: its role, its uptime, its
/// counters and bounds, the commands it answers. A cheap handle (one `Arc`); every node
/// kind hands one out (`report()`), and its built-in commands answer from it.
#[derive(Clone)]
pub struct NodeReport {
    inner: Arc<Inner>,
}

struct Inner {
    role: String,
    started: Instant,
    sources: Mutex<Vec<Source>>,
    limits: Mutex<Vec<Counter>>,
    commands: Mutex<Vec<Described>>,
    /// The description, made once when first asked for (the commands are fixed by then).
    described: OnceLock<Vec<CommandInfo>>,
}

impl std::fmt::Debug for NodeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeReport")
            .field("role", &self.inner.role)
            .finish_non_exhaustive()
    }
}

impl NodeReport {
    /// The report of a node of `role`, starting now.
    pub(crate) fn new(role: impl Into<String>) -> NodeReport {
        NodeReport {
            inner: Arc::new(Inner {
                role: role.into(),
                started: Instant::now(),
                sources: Mutex::default(),
                limits: Mutex::default(),
                commands: Mutex::default(),
                described: OnceLock::new(),
            }),
        }
    }

    /// Adds the section `name` of the counters `read` reads (a snapshot's `named()`), for
    /// the sockets of `endpoints`.
    pub(crate) fn section<F, I>(&self, name: &'static str, endpoints: Vec<String>, read: F)
    where
        F: Fn() -> I + Send + Sync + 'static,
        I: IntoIterator<Item = (&'static str, u64)>,
    {
        self.source(move |sections| sections.push(Section::new(name, &endpoints, read())));
    }

    /// Adds what `source` adds to every [`NodeStats`].
    pub(crate) fn source(&self, source: impl Fn(&mut Vec<Section>) + Send + Sync + 'static) {
        lock(&self.inner.sources).push(Box::new(source));
    }

    /// Says the node keeps the bound `name` at `value`.
    pub(crate) fn limit(&self, name: &str, value: u64) {
        lock(&self.inner.limits).push(Counter::new(name, value));
    }

    /// Says the node answers command `C`. A built-in's schemas are not traced: they are
    /// this crate's types (`zmqrpc::transport::node`), and tracing them would link the
    /// tracer's reading of every type a `Description` is made of into every proxy (about
    /// 100 KB on armv7).
    pub(crate) fn command<C: Command>(&self) {
        // Decided at compile time, so that a built-in's tracing is never linked.
        let (request, response): (SchemaOf, SchemaOf) = if const { is_builtin(C::KEY) } {
            (builtin_schema, builtin_schema)
        } else {
            (Schema::of::<C>, Schema::of::<C::Response>)
        };
        lock(&self.inner.commands).push(Described {
            name: C::NAME,
            key: C::KEY,
            request,
            response,
        });
    }

    /// Says the node answers the built-in commands.
    pub(crate) fn builtins(&self) {
        self.command::<super::Ping>();
        self.command::<super::GetStats>();
        self.command::<super::Describe>();
    }

    /// The node's role: `server`, `rep2req`, …, `buffered`, `rep2serial`.
    pub fn role(&self) -> &str {
        &self.inner.role
    }

    /// What [`Ping`](super::Ping) answers.
    pub fn pong(&self) -> Pong {
        let uptime = self.inner.started.elapsed().as_millis();
        Pong {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            role: self.inner.role.clone(),
            uptime_ms: u64::try_from(uptime).unwrap_or(u64::MAX),
        }
    }

    /// What [`GetStats`](super::GetStats) answers: every counter now, with the bounds.
    pub fn stats(&self) -> NodeStats {
        let mut sections = Vec::new();
        for source in lock(&self.inner.sources).iter() {
            source(&mut sections);
        }
        let held = budget::held_bytes() as u64;
        sections.push(Section::new("budget", &[], [("held_bytes", held)]));
        let mut limits = vec![Counter::new(
            "process_budget_bytes",
            budget::process_budget() as u64,
        )];
        limits.extend(lock(&self.inner.limits).iter().cloned());
        NodeStats {
            pong: self.pong(),
            sections,
            limits,
        }
    }

    /// What [`Describe`](super::Describe) answers: the commands the node answers, with
    /// their schemas.
    pub fn description(&self) -> Description {
        let commands = self.inner.described.get_or_init(|| {
            let mut commands: Vec<CommandInfo> = lock(&self.inner.commands)
                .iter()
                .map(|described| CommandInfo {
                    name: described.name.to_owned(),
                    key: described.key.0,
                    request: (described.request)(),
                    response: (described.response)(),
                })
                .collect();
            commands.sort_by(|a, b| a.name.cmp(&b.name));
            commands
        });
        Description {
            pong: self.pong(),
            commands: commands.clone(),
        }
    }
}

/// How a command's schema is traced.
type SchemaOf = fn() -> Result<Schema, String>;

/// Whether `key` is a built-in command's.
const fn is_builtin(key: Key) -> bool {
    use super::{Describe, GetStats, Ping};
    key.0 == Ping::KEY.0 || key.0 == GetStats::KEY.0 || key.0 == Describe::KEY.0
}

/// What `Describe` says of a built-in's shape.
fn builtin_schema() -> Result<Schema, String> {
    Err(BUILTIN_SCHEMA.to_owned())
}

/// What [`Describe`](super::Describe) says for the shape of a built-in command's request
/// and response: they are the types of [`node`](super), not traced.
pub const BUILTIN_SCHEMA: &str = "a built-in command: its types are zmqrpc::transport::node's";

/// A report's lists stay usable if a thread panicked while adding to them.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
