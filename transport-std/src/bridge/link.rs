//! The serial side of a bridge: a device opened by path in raw mode, frames in the core's
//! COBS stream framing, and reopening with backoff when the device goes away.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use zmqrpc_core::stream::{self, Deframer, Feed, StreamError};

use super::LINK_FRAME_MAX;

/// Encoded bytes a link frame may take (COBS overhead included).
const ENCODED_MAX: usize = stream::encoded_len(LINK_FRAME_MAX);

/// Bytes read from the device at a time.
const READ_CHUNK: usize = 512;

/// The first wait before reopening a device that went away; it doubles on each failed try.
const FIRST_REOPEN: Duration = Duration::from_millis(50);

/// Why the serial side could not carry a frame.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkError {
    /// The device is not open: it went away, or never came, and the bridge is trying to open
    /// it again.
    NotOpen {
        /// The device's path.
        path: PathBuf,
        /// Why the last try to open it failed, or why it was closed.
        why: String,
        /// The longest wait between two tries.
        every: Duration,
    },
    /// Reading or writing failed: the device went away (unplugged, reset with its USB
    /// bridge) or the line failed. The bridge closes it and tries to open it again.
    Lost {
        /// The device's path.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The frame is larger than a link frame may be.
    TooLarge {
        /// The frame's size.
        len: usize,
        /// [`LINK_FRAME_MAX`].
        max: usize,
    },
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::NotOpen { path, why, every } => write!(
                f,
                "serial device {} is not open ({why}); trying again every {every:?} at most",
                path.display()
            ),
            LinkError::Lost { path, source } => {
                write!(f, "serial device {} failed: {source}", path.display())
            }
            LinkError::TooLarge { len, max } => write!(
                f,
                "a frame of {len} bytes is larger than the serial link takes ({max} bytes)"
            ),
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinkError::Lost { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What the link has read: a frame, or a frame lost on the line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival<'a> {
    /// A whole frame, valid until the next read.
    Frame(&'a [u8]),
    /// Bytes between two delimiters that were no frame (line noise, a frame cut by a reset)
    /// or too large for the link: skipped.
    Damaged(StreamError<()>),
}

/// A serial device, open or waiting to be reopened.
pub(crate) struct SerialLink {
    path: PathBuf,
    baud: u32,
    write_timeout: Duration,
    reopen_max: Duration,
    port: Option<TTYPort>,
    /// Why the device is closed, for the errors callers get meanwhile.
    closed_because: String,
    next_try: Instant,
    delay: Duration,
    deframer: Box<Deframer<ENCODED_MAX>>,
    /// Bytes read and not yet through the deframer: `read[start..end]`.
    read: Box<[u8; READ_CHUNK]>,
    start: usize,
    end: usize,
    /// A frame being encoded for the line.
    encoded: Vec<u8>,
}

impl SerialLink {
    /// A link to the device at `path`, not yet open; [`open_if_due`](Self::open_if_due)
    /// opens it.
    pub(crate) fn new(
        path: PathBuf,
        baud: u32,
        write_timeout: Duration,
        reopen_max: Duration,
    ) -> Self {
        SerialLink {
            path,
            baud,
            write_timeout,
            reopen_max: reopen_max.max(FIRST_REOPEN),
            port: None,
            closed_because: "not opened yet".into(),
            next_try: Instant::now(),
            delay: FIRST_REOPEN,
            deframer: Box::new(Deframer::new()),
            read: Box::new([0; READ_CHUNK]),
            start: 0,
            end: 0,
            encoded: vec![0; ENCODED_MAX + 2],
        }
    }

    /// The device's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the device is open.
    pub(crate) fn is_open(&self) -> bool {
        self.port.is_some()
    }

    /// When the closed device is next tried, if it is closed.
    pub(crate) fn next_try(&self) -> Option<Instant> {
        self.port.is_none().then_some(self.next_try)
    }

    /// The open device as a poll item (readable, or failed), if it is open.
    pub(crate) fn poll_item(&self) -> Option<zmq::PollItem<'static>> {
        self.port
            .as_ref()
            .map(|port| zmq::PollItem::from_fd(port.as_raw_fd(), zmq::POLLIN))
    }

    /// Opens the device if it is closed and its next try is due; `Some` says a try was made
    /// and how it went.
    pub(crate) fn open_if_due(&mut self) -> Option<Result<(), serialport::Error>> {
        if self.port.is_some() || Instant::now() < self.next_try {
            return None;
        }
        let opened = serialport::new(self.path.to_string_lossy(), self.baud)
            .timeout(self.write_timeout)
            // Exclusively (TIOCEXCL) and close-on-exec: a process this one starts does not
            // keep the device open after the bridge let go of it.
            .open_native();
        Some(match opened {
            Ok(port) => {
                self.port = Some(port);
                self.delay = FIRST_REOPEN;
                // Whatever was half-read from the device before belongs to no frame.
                *self.deframer = Deframer::new();
                self.start = self.end;
                Ok(())
            }
            Err(e) => {
                self.closed_because = e.to_string();
                self.schedule_reopen();
                Err(e)
            }
        })
    }

    /// Closes the device after `error` and schedules the next try to open it.
    pub(crate) fn lose(&mut self, error: &std::io::Error) {
        self.port = None;
        self.closed_because = format!("it failed: {error}");
        self.schedule_reopen();
    }

    fn schedule_reopen(&mut self) {
        self.next_try = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(self.reopen_max);
    }

    /// The error a caller gets while the device is closed.
    pub(crate) fn not_open(&self) -> LinkError {
        LinkError::NotOpen {
            path: self.path.clone(),
            why: self.closed_because.clone(),
            every: self.reopen_max,
        }
    }

    /// Writes `frame` to the device: a delimiter first (so the device drops whatever partial
    /// garbage it holds and takes this frame whole), then the COBS encoding and its
    /// delimiter. A failure closes the device.
    pub(crate) fn write_frame(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        if frame.len() > LINK_FRAME_MAX {
            return Err(LinkError::TooLarge {
                len: frame.len(),
                max: LINK_FRAME_MAX,
            });
        }
        let Some(port) = self.port.as_mut() else {
            return Err(self.not_open());
        };
        self.encoded[0] = stream::DELIMITER;
        let len = match stream::encode(frame, &mut self.encoded[1..]) {
            Ok(encoded) => encoded.len(),
            Err(_) => {
                return Err(LinkError::TooLarge {
                    len: frame.len(),
                    max: LINK_FRAME_MAX,
                })
            }
        };
        let written = port
            .write_all(&self.encoded[..=len])
            .and_then(|()| port.flush());
        written.map_err(|source| self.lost(source))
    }

    /// Waits at most `timeout` for the device to have bytes (or to fail); whether it has.
    pub(crate) fn wait_readable(&self, timeout: Duration) -> bool {
        let Some(item) = self.poll_item() else {
            return false;
        };
        let mut items = [item];
        let timeout_ms = i64::from(crate::socket::wait_ms(timeout));
        // A failed poll (EINTR) reads as "nothing yet": the caller waits again.
        zmq::poll(&mut items, timeout_ms).is_ok_and(|n| n > 0)
    }

    /// The next frame from what has been read, reading the device once if nothing is left
    /// (without waiting: call it after [`wait_readable`](Self::wait_readable) or a poll said
    /// so). `Ok(None)`: nothing more for now.
    pub(crate) fn next(&mut self) -> Result<Option<Arrival<'_>>, LinkError> {
        if self.start == self.end && !self.fill()? {
            return Ok(None);
        }
        let input = &self.read[self.start..self.end];
        let (used, arrival) = match self.deframer.feed(input) {
            Feed::NeedMore => (input.len(), None),
            Feed::Frame { frame, rest } => (input.len() - rest.len(), Some(Arrival::Frame(frame))),
            Feed::Error { error, rest } => {
                (input.len() - rest.len(), Some(Arrival::Damaged(error)))
            }
        };
        self.start += used;
        Ok(arrival)
    }

    /// Reads what the device has (if anything); whether bytes arrived.
    fn fill(&mut self) -> Result<bool, LinkError> {
        let Some(port) = self.port.as_ref() else {
            return Ok(false);
        };
        // Only what is there already: a read must not wait.
        let pending = match port.bytes_to_read() {
            Ok(n) => n,
            Err(e) => return Err(self.lost(e.into())),
        };
        // Nothing pending, but a device that went away (a closed pseudo-terminal, an
        // unplugged adapter) polls as ready with nothing to read: only a read tells.
        if pending == 0 && !self.wait_readable(Duration::ZERO) {
            return Ok(false);
        }
        let Some(port) = self.port.as_mut() else {
            return Ok(false);
        };
        match port.read(&mut self.read[..]) {
            Ok(0) => Err(self.lost(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => {
                self.start = 0;
                self.end = n;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Closes the device after `source` and says so.
    fn lost(&mut self, source: std::io::Error) -> LinkError {
        self.lose(&source);
        LinkError::Lost {
            path: self.path.clone(),
            source,
        }
    }
}
