//! A node's counters over HTTP for Prometheus (`--metrics 127.0.0.1:9100` in the binaries):
//! `GET /metrics` answers the node's [`NodeReport`] as the Prometheus text format, or as
//! OpenMetrics when the scraper's `Accept` header asks for it.
//!
//! One thread accepts and answers one connection at a time, each bounded: a request is read
//! for at most [`REQUEST_WAIT`] and [`REQUEST_MAX`] bytes, the answer written for at most
//! as long, so a peer that connects and never sends, or sends without end, holds the
//! exporter for a moment and the node not at all. It has no authentication: bind it to
//! loopback, or to a management network.
//!
//! ```
//! use zmqrpc::transport::RpcServer;
//! use std::io::{Read, Write};
//!
//! let server = RpcServer::builder().rep("tcp://127.0.0.1:*").bind()?;
//! let exporter = zmqrpc::metrics::Exporter::bind("127.0.0.1:0", server.report())?;
//! let mut scrape = std::net::TcpStream::connect(exporter.local_addr())?;
//! scrape.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
//! let mut answer = String::new();
//! scrape.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK"));
//! assert!(answer.contains("zmqrpc_dispatch_served_total{role=\"server\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::transport::node::{MetricsFormat, NodeReport};

/// How long a scraper has to send its request, and the exporter to write its answer.
pub const REQUEST_WAIT: Duration = Duration::from_secs(2);

/// The most bytes of a request read (its line and headers).
pub const REQUEST_MAX: usize = 8 << 10;

/// A running exporter; stopped (and its thread joined) when dropped.
pub struct Exporter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Binds `addr` (e.g. `127.0.0.1:9100`; port 0 picks one) and serves `report` there.
    pub fn bind(addr: impl ToSocketAddrs, report: NodeReport) -> io::Result<Exporter> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("zmqrpc-metrics".into())
            .spawn(move || serve(&listener, &report, &stopping))?;
        Ok(Exporter {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens (the port resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept; if it cannot be reached, the thread is left to end with the
        // process rather than hang the drop.
        if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Answers connections one at a time until stopped.
fn serve(listener: &TcpListener, report: &NodeReport, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, report) {
                    log::debug!("metrics: a scrape failed: {e}");
                }
            }
            Err(e) => {
                log::warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request and answers it.
fn answer(mut stream: TcpStream, report: &NodeReport) -> io::Result<()> {
    stream.set_write_timeout(Some(REQUEST_WAIT))?;
    let head = match read_head(&mut stream)? {
        Some(head) => head,
        None => {
            return respond(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                b"bad request\n",
            )
        }
    };
    let mut lines = head.lines();
    let mut request = lines.next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        request.next().unwrap_or_default(),
        request.next().unwrap_or_default(),
    );
    let accept = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map_or("", |(_, value)| value.trim());
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        );
    }
    if path != "/metrics" && path != "/" {
        return respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"see /metrics\n",
        );
    }
    let format = MetricsFormat::from_accept(accept);
    let body = report.stats().metrics(format);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        format.content_type(),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method == "GET" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// The request's line and headers, up to the blank line: `None` if they are not text, do
/// not end within [`REQUEST_MAX`] bytes, or do not come within [`REQUEST_WAIT`].
fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let deadline = Instant::now() + REQUEST_WAIT;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(String::from_utf8(head).ok());
        }
        if head.len() > REQUEST_MAX {
            return Ok(None);
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
