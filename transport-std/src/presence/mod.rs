//! Presence: nodes that say they are alive, and a roster of who is up — so a dashboard sees
//! a node go away without polling each one.
//!
//! A node's [`Announcer`] calls [`Announce`] on a roster every `every` (its name, role,
//! version and endpoints), and once more, `leaving`, when it stops. A roster is two services
//! any [`RpcServer`](crate::RpcServer) can host ([`Roster::register`]): `Announce`, and
//! [`GetRoster`], which answers who is up, since when, and when each was last heard. A node
//! not heard for [`SILENCE_TURNS`] of its own intervals is down; one that said it was
//! leaving is down at once. Announcements go out from the node (a REQ it connects), so a
//! node behind NAT or on a cellular link is seen as well as any; a roster with
//! [`users`](crate::ServerBuilder::users) and [`permissions`](crate::ServerBuilder::permissions)
//! hears only whom it lets announce, and records the user each announced as.
//!
//! ```
//! use std::time::Duration;
//! use zmqrpc_transport_std::presence::{Announcer, GetRoster, Presence, Roster};
//! use zmqrpc_transport_std::{RpcClient, RpcServer};
//!
//! let (builder, _roster) = Roster::new(1024).register(RpcServer::builder())?;
//! let server = builder.rep("tcp://127.0.0.1:*").bind()?;
//! let endpoint = server.rep_endpoints()[0].clone();
//! let running = server.spawn()?;
//!
//! let presence = Presence::new("pi-7", "server", vec!["tcp://10.0.0.7:30000".into()]);
//! let announcer = Announcer::builder(presence).to(&endpoint).every(Duration::from_millis(200)).start()?;
//! let mut dashboard = RpcClient::builder().req(&endpoint).connect()?;
//! # let mut members = dashboard.call(&GetRoster)?.members;
//! # for _ in 0..100 { if !members.is_empty() { break; } std::thread::sleep(Duration::from_millis(20)); members = dashboard.call(&GetRoster)?.members; }
//! assert!(members.iter().any(|m| m.name == "pi-7" && m.up));
//! drop(announcer); // says it is leaving: down at once
//! assert!(dashboard.call(&GetRoster)?.members.iter().all(|m| !m.up));
//! running.stop_and_wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod announcer;
mod roster;

use serde::{Deserialize, Serialize};
use zmqrpc_core::Command;

pub use announcer::{Announcer, AnnouncerBuilder, AnnouncerCounts, DEFAULT_EVERY};
pub use roster::{Roster, RosterCounts, MAX_EVERY, MIN_EVERY, SILENCE_TURNS};

/// What a node says about itself when it announces.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Its name in the fleet (unique: a second node of the same name replaces the first).
    pub name: String,
    /// Its role: `server`, `rep2req`, … (as `Ping` says).
    pub role: String,
    /// The zmqrpc version it runs.
    pub version: String,
    /// Where it can be reached.
    pub endpoints: Vec<String>,
}

impl Presence {
    /// A node named `name`, of `role`, reached at `endpoints`, running this version.
    pub fn new(
        name: impl Into<String>,
        role: impl Into<String>,
        endpoints: Vec<String>,
    ) -> Presence {
        Presence {
            name: name.into(),
            role: role.into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            endpoints,
        }
    }
}

/// A node says it is alive (or, `leaving`, that it stops). Answered `()` by a roster.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// Who it is.
    pub presence: Presence,
    /// How often it announces, in milliseconds: the roster counts it down after
    /// [`SILENCE_TURNS`] of these without a word.
    pub every_ms: u64,
    /// It is stopping: down at once.
    pub leaving: bool,
}

impl Command for Announce {
    const NAME: &'static str = "zmqrpc.presence.announce";
    type Response = ();
}

/// Asks a roster who is up. Answered with the [`RosterView`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetRoster;

impl Command for GetRoster {
    const NAME: &'static str = "zmqrpc.presence.roster";
    type Response = RosterView;
}

/// Who a roster has heard of, by name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RosterView {
    /// Every node it keeps, up or down, by name.
    pub members: Vec<Member>,
    /// Announcements refused because the roster was full of nodes that are up.
    pub refused: u64,
}

impl RosterView {
    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.name == name)
    }
}

/// One node a roster has heard of.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its version.
    pub version: String,
    /// Where it said it can be reached.
    pub endpoints: Vec<String>,
    /// The user it announced as, on a protected roster.
    pub user_id: Option<String>,
    /// Whether it is up: heard within its silence timeout, and not leaving.
    pub up: bool,
    /// Milliseconds it has been in that state (up since, or down since).
    pub for_ms: u64,
    /// Milliseconds since it was last heard.
    pub last_heard_ms: u64,
    /// Its announcements heard.
    pub announcements: u64,
}
