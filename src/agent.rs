//! The node agent's commands: what `zmqrpc-server` answers on every device, and what
//! `zmqrpc-server call` (or your own [`RpcClient`](crate::transport::RpcClient)) asks.
//!
//! | command | answer |
//! |---|---|
//! | [`GetNodeInfo`] | [`NodeInfo`]: hostname, uptime, load, memory, CPU temperature |
//! | [`Echo`] | the same text |
//!
//! Beside them it answers what every node answers
//! ([`node`](crate::transport::node): `Ping`, `GetStats`, `Describe`).

use serde::{Deserialize, Serialize};

use crate::transport::{Dialect, ServerBuilder, ServiceError};
use crate::Command;

/// Asks for the node's vital signs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GetNodeInfo;

impl Command for GetNodeInfo {
    const NAME: &'static str = "agent.node_info";
    type Response = NodeInfo;
}

/// A node's vital signs, read from `/proc` and `/sys` (Linux). A field the node cannot tell
/// is `None`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// The host name.
    pub hostname: Option<String>,
    /// Seconds since boot.
    pub uptime_secs: Option<u64>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: Option<[f32; 3]>,
    /// Total memory, KiB.
    pub mem_total_kib: Option<u64>,
    /// Memory available for new work, KiB.
    pub mem_available_kib: Option<u64>,
    /// CPU temperature in °C, where `/sys/class/thermal` has it.
    pub cpu_temp_c: Option<f32>,
}

/// Sends text back.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Echo(pub String);

impl Command for Echo {
    const NAME: &'static str = "agent.echo";
    type Response = String;
}

/// Registers the agent's services on `builder`.
pub fn register<D: Dialect>(
    builder: ServerBuilder<D>,
) -> Result<ServerBuilder<D>, crate::transport::RegisterError> {
    builder
        .register(|_: GetNodeInfo| Ok::<_, ServiceError>(NodeInfo::read()))?
        .register(|Echo(text): Echo| Ok::<_, ServiceError>(text))
}

impl NodeInfo {
    /// Reads this node's vital signs.
    pub fn read() -> NodeInfo {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let meminfo = read("/proc/meminfo").unwrap_or_default();
        let mem = |key: &str| {
            meminfo.lines().find_map(|line| {
                line.strip_prefix(key)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
        };
        let load = read("/proc/loadavg").and_then(|text| {
            let mut fields = text.split_whitespace().map(|f| f.parse::<f32>().ok());
            Some([fields.next()??, fields.next()??, fields.next()??])
        });
        NodeInfo {
            hostname: read("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()),
            uptime_secs: read("/proc/uptime")
                .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
                .map(|secs| secs as u64),
            load,
            mem_total_kib: mem("MemTotal:"),
            mem_available_kib: mem("MemAvailable:"),
            cpu_temp_c: cpu_temperature(),
        }
    }
}

/// The first thermal zone of type `cpu*`/`soc*` (or zone 0), in °C.
fn cpu_temperature() -> Option<f32> {
    let zones = std::fs::read_dir("/sys/class/thermal").ok()?;
    let mut best = None;
    for zone in zones.flatten() {
        let path = zone.path();
        if !path.file_name()?.to_str()?.starts_with("thermal_zone") {
            continue;
        }
        let kind = std::fs::read_to_string(path.join("type")).unwrap_or_default();
        let millis: Option<f32> = std::fs::read_to_string(path.join("temp"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        if let Some(millis) = millis {
            let celsius = millis / 1000.0;
            let kind = kind.trim().to_ascii_lowercase();
            if kind.starts_with("cpu") || kind.starts_with("soc") || kind.contains("x86_pkg") {
                return Some(celsius);
            }
            best.get_or_insert(celsius);
        }
    }
    best
}

/// `dialect` with the pyzmqrpc3 class names of the agent's commands and of every node's
/// built-ins: a Python pyzmqrpc3 client calls them as `GetNodeInfo`, `Echo`, `Ping`,
/// `Stats` and `Describe` (see the README).
#[cfg(feature = "pyzmqrpc3")]
pub fn pyzmqrpc3_classes(
    dialect: crate::transport::dialect::Pyzmqrpc3,
) -> crate::transport::dialect::Pyzmqrpc3 {
    crate::transport::node::pyzmqrpc3_classes(dialect)
        .class::<GetNodeInfo>("GetNodeInfo")
        .class::<Echo>("Echo")
}
