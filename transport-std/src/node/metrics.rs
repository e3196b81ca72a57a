//! [`NodeStats`] as metrics text: the Prometheus text format (0.0.4) or OpenMetrics 1.0,
//! every counter a family named `zmqrpc_<section>_<counter>`, labelled with the node's
//! role and the section's endpoints. Pure text, no I/O: the binaries serve it over HTTP
//! (`--metrics`).

use std::fmt::Write;

use super::commands::{NodeStats, Section};

/// Which text a scraper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsFormat {
    /// Prometheus' text format 0.0.4 (`text/plain; version=0.0.4`): what every scraper takes.
    Prometheus,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`), ending in `# EOF`.
    OpenMetrics,
}

impl MetricsFormat {
    /// The format an HTTP `Accept` header asks for: OpenMetrics if it names it.
    pub fn from_accept(accept: &str) -> MetricsFormat {
        match accept.contains("application/openmetrics-text") {
            true => MetricsFormat::OpenMetrics,
            false => MetricsFormat::Prometheus,
        }
    }

    /// The HTTP `Content-Type` of the text.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            MetricsFormat::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }
}

/// Whether counter `counter` of section `section` is a gauge (a level that goes up and
/// down: what a queue holds now, what opening a spool found) rather than a count that only
/// grows.
pub fn is_gauge(section: &str, counter: &str) -> bool {
    section == "spool" || matches!(counter, "queued" | "queued_bytes" | "held_bytes")
}

impl NodeStats {
    /// The counters as metrics text in `format`.
    pub fn metrics(&self, format: MetricsFormat) -> String {
        let mut text = String::new();
        let role = escape(&self.pong.role);
        let version = escape(&self.pong.version);
        family(
            &mut text,
            format,
            "zmqrpc_up",
            Kind::Gauge,
            "1 while the node serves, with its role and version",
        );
        let _ = writeln!(text, "zmqrpc_up{{role=\"{role}\",version=\"{version}\"}} 1");
        family(
            &mut text,
            format,
            "zmqrpc_uptime_seconds",
            Kind::Gauge,
            "seconds since the node started",
        );
        let uptime = self.pong.uptime_ms as f64 / 1000.0;
        let _ = writeln!(text, "zmqrpc_uptime_seconds{{role=\"{role}\"}} {uptime}");
        for section in &self.sections {
            write_section(&mut text, format, &role, section);
        }
        family(
            &mut text,
            format,
            "zmqrpc_limit",
            Kind::Gauge,
            "the bounds the node keeps, by name",
        );
        for limit in &self.limits {
            let name = escape(&limit.name);
            let _ = writeln!(
                text,
                "zmqrpc_limit{{role=\"{role}\",name=\"{name}\"}} {}",
                limit.value
            );
        }
        if format == MetricsFormat::OpenMetrics {
            text.push_str("# EOF\n");
        }
        text
    }
}

/// One section's counters, a family each.
fn write_section(text: &mut String, format: MetricsFormat, role: &str, section: &Section) {
    let endpoints = escape(&section.endpoints.join(","));
    for counter in &section.counters {
        let family_name = format!(
            "zmqrpc_{}_{}",
            name_part(&section.name),
            name_part(&counter.name)
        );
        let kind = match is_gauge(&section.name, &counter.name) {
            true => Kind::Gauge,
            false => Kind::Counter,
        };
        let help = format!("zmqrpc {}.{}", section.name, counter.name);
        family(text, format, &family_name, kind, &help);
        // A counter's samples end in `_total` in both formats.
        let sample = match kind {
            Kind::Counter => format!("{family_name}_total"),
            Kind::Gauge => family_name,
        };
        let _ = writeln!(
            text,
            "{sample}{{role=\"{role}\",endpoint=\"{endpoints}\"}} {}",
            counter.value
        );
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// A family's `# TYPE` and `# HELP` lines. In the Prometheus format a counter's samples
/// carry the family's name, so its name ends in `_total` there too.
fn family(text: &mut String, format: MetricsFormat, name: &str, kind: Kind, help: &str) {
    let (name, kind) = match (kind, format) {
        (Kind::Counter, MetricsFormat::Prometheus) => (format!("{name}_total"), "counter"),
        (Kind::Counter, MetricsFormat::OpenMetrics) => (name.to_owned(), "counter"),
        (Kind::Gauge, _) => (name.to_owned(), "gauge"),
    };
    let _ = writeln!(text, "# TYPE {name} {kind}");
    let _ = writeln!(text, "# HELP {name} {help}");
}

/// A name part of only `[a-z0-9_]` (a counter's or section's name already is; anything
/// else becomes `_`).
fn name_part(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect()
}

/// A label value escaped as both formats want: `\\`, `\"`, `\n`.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::node::{Counter, Pong};

    fn stats() -> NodeStats {
        NodeStats {
            pong: Pong {
                version: "0.1.0".into(),
                role: "rep2req".into(),
                uptime_ms: 1500,
            },
            sections: vec![
                Section::new("input", &["tcp://*:30000".into()], [("received", 7)]),
                Section::new("proxy", &[], [("forwarded", 5), ("queued", 2)]),
                Section::new("odd", &["ipc:///a\"b\\c".into()], [("x", 1)]),
            ],
            limits: vec![Counter::new("timeout_ms", 5000)],
        }
    }

    #[test]
    fn prometheus_text_names_counters_with_total_and_gauges_without() {
        let text = stats().metrics(MetricsFormat::Prometheus);
        assert!(
            text.contains("# TYPE zmqrpc_input_received_total counter\n"),
            "{text}"
        );
        assert!(text.contains(
            "zmqrpc_input_received_total{role=\"rep2req\",endpoint=\"tcp://*:30000\"} 7\n"
        ));
        assert!(
            text.contains("# TYPE zmqrpc_proxy_queued gauge\n"),
            "{text}"
        );
        assert!(text.contains("zmqrpc_proxy_queued{role=\"rep2req\",endpoint=\"\"} 2\n"));
        assert!(
            text.contains("zmqrpc_uptime_seconds{role=\"rep2req\"} 1.5\n"),
            "{text}"
        );
        assert!(text.contains("zmqrpc_limit{role=\"rep2req\",name=\"timeout_ms\"} 5000\n"));
        assert!(text.contains("endpoint=\"ipc:///a\\\"b\\\\c\""), "{text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_names_the_family_and_ends_in_eof() {
        let text = stats().metrics(MetricsFormat::OpenMetrics);
        assert!(
            text.contains("# TYPE zmqrpc_input_received counter\n"),
            "{text}"
        );
        assert!(text.contains("zmqrpc_input_received_total{"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            MetricsFormat::from_accept("application/openmetrics-text; version=1.0.0"),
            MetricsFormat::OpenMetrics
        );
        assert_eq!(MetricsFormat::from_accept("*/*"), MetricsFormat::Prometheus);
    }
}
