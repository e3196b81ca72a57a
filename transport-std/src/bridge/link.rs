//! The serial side of a bridge: a device opened by path in raw mode, frames in the core's
//! COBS stream framing, and reopening with backoff when the device goes away or stalls.
//!
//! The link owns the framing, the write deadline and the reopening; the device itself is a
//! [`Port`] that an [`Opener`] opens, so the same link runs over a serial device
//! ([`SerialPath`]) or, in the relay's unit tests, over one end of a socket pair.
//!
//! The device is opened exclusively, close-on-exec and non-blocking: a read takes what has
//! arrived, a write what fits, and a frame that cannot be written within the write timeout
//! (a wedged USB device) closes the device instead of blocking the bridge. Output still
//! queued is discarded before closing, so a close never waits on a dead line either.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serialport::{ClearBuffer, SerialPort, TTYPort};
use zmqrpc_core::stream::{self, Deframer, Feed, StreamError};

use super::LINK_FRAME_MAX;

/// Encoded bytes a link frame may take (COBS overhead included).
const ENCODED_MAX: usize = stream::encoded_len(LINK_FRAME_MAX);

/// Bytes read from the device at a time.
const READ_CHUNK: usize = 512;

/// The first wait before reopening a device that went away; it doubles on each try that
/// fails (or opens a device that fails before carrying a frame).
const FIRST_REOPEN: Duration = Duration::from_millis(50);

/// The longest a write waits for room at a time, between two looks at whether to give up.
const WRITE_SLICE: Duration = Duration::from_millis(20);

/// Why the serial side could not carry a frame.
#[derive(Debug)]
pub(crate) enum LinkError {
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
    /// A frame could not be written within the write timeout (the device takes no more
    /// bytes); the bridge closes it and tries to open it again.
    Stalled {
        /// The device's path.
        path: PathBuf,
        /// The write timeout.
        after: Duration,
    },
    /// The bridge is stopping: the write was given up.
    Stopping,
    /// The frame is larger than a link frame may be.
    TooLarge {
        /// The frame's size.
        len: usize,
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
            LinkError::Stalled { path, after } => write!(
                f,
                "serial device {} took no more bytes for {after:?}: closed, to be opened again",
                path.display()
            ),
            LinkError::Stopping => f.write_str("the bridge is stopping"),
            LinkError::TooLarge { len } => write!(
                f,
                "a frame of {len} bytes is larger than the serial link takes \
                 ({LINK_FRAME_MAX} bytes)"
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
    /// Bytes of a frame not yet whole: read on.
    Partial,
}

/// An open device: bytes read and written without waiting, and a descriptor to poll.
pub(crate) trait Port: Read + Write + AsRawFd + Send + 'static {
    /// Discards output the device has not taken yet, so that closing it never waits on a
    /// dead line.
    fn discard_output(&mut self);
}

/// How a link opens its device, first and after each loss.
pub(crate) trait Opener: Send + 'static {
    /// The device it opens.
    type Port: Port;

    /// Opens the device, non-blocking.
    fn open(&mut self) -> io::Result<Self::Port>;

    /// The device's path, for errors and the log.
    fn path(&self) -> &Path;
}

/// A serial device by path: raw mode at `baud`, exclusive, close-on-exec, non-blocking.
pub(crate) struct SerialPath {
    /// The device, e.g. `/dev/serial/by-id/…`.
    pub(crate) path: PathBuf,
    /// Its line speed.
    pub(crate) baud: u32,
}

impl Opener for SerialPath {
    type Port = TTYPort;

    fn open(&mut self) -> io::Result<TTYPort> {
        let port = serialport::new(self.path.to_string_lossy(), self.baud)
            .timeout(WRITE_SLICE)
            // Exclusively (TIOCEXCL) and close-on-exec: a process this one starts does not
            // keep the device open after the bridge let go of it.
            .open_native()?;
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(port.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(port)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Port for TTYPort {
    fn discard_output(&mut self) {
        // A close waits for queued output to drain (up to the driver's closing wait): a
        // dead line never drains.
        let _ = self.clear(ClearBuffer::Output);
    }
}

/// A device, open or waiting to be reopened.
pub(crate) struct SerialLink<O: Opener = SerialPath> {
    opener: O,
    write_timeout: Duration,
    reopen_max: Duration,
    port: Option<O::Port>,
    /// Whether the open device has carried a frame yet: only then does the backoff start
    /// over (a device that opens and fails at once is retried ever more slowly).
    proven: bool,
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

impl<O: Opener> SerialLink<O> {
    /// A link to the device `opener` opens, not yet open;
    /// [`open_if_due`](Self::open_if_due) opens it.
    pub(crate) fn new(opener: O, write_timeout: Duration, reopen_max: Duration) -> Self {
        SerialLink {
            opener,
            write_timeout,
            reopen_max: reopen_max.max(FIRST_REOPEN),
            port: None,
            proven: false,
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
        self.opener.path()
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
    pub(crate) fn open_if_due(&mut self) -> Option<io::Result<()>> {
        if self.port.is_some() || Instant::now() < self.next_try {
            return None;
        }
        Some(match self.opener.open() {
            Ok(port) => {
                self.port = Some(port);
                self.proven = false;
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

    /// Closes the device, discarding output it never took, and schedules the next try to
    /// open it; `why` is what callers are told meanwhile.
    fn close(&mut self, why: String) {
        if let Some(mut port) = self.port.take() {
            port.discard_output();
        }
        self.closed_because = why;
        self.schedule_reopen();
    }

    fn schedule_reopen(&mut self) {
        self.next_try = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(self.reopen_max);
    }

    /// The error a caller gets while the device is closed.
    pub(crate) fn not_open(&self) -> LinkError {
        LinkError::NotOpen {
            path: self.path().to_owned(),
            why: self.closed_because.clone(),
            every: self.reopen_max,
        }
    }

    /// Writes `frame` to the device: a delimiter first (so the device drops whatever partial
    /// garbage it holds and takes this frame whole), then the COBS encoding and its
    /// delimiter. Waits for room at most the write timeout (or until `give_up`); a device
    /// that takes nothing for that long, or fails, is closed.
    pub(crate) fn write_frame(
        &mut self,
        frame: &[u8],
        give_up: &dyn Fn() -> bool,
    ) -> Result<(), LinkError> {
        if frame.len() > LINK_FRAME_MAX {
            return Err(LinkError::TooLarge { len: frame.len() });
        }
        self.encoded[0] = stream::DELIMITER;
        let len = stream::encode(frame, &mut self.encoded[1..])
            .map_err(|_| LinkError::TooLarge { len: frame.len() })?
            .len();
        let Some(port) = self.port.as_mut() else {
            return Err(self.not_open());
        };
        let deadline = Instant::now() + self.write_timeout;
        let mut written = 0;
        let failure = loop {
            if written == len + 1 {
                break None;
            }
            match port.write(&self.encoded[written..=len]) {
                Ok(0) => break Some(ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                // No room yet (serialport waits up to a slice for it).
                Err(e) if is_not_yet(&e) => {
                    if give_up() {
                        // The rest is never sent: the device resyncs at our next delimiter.
                        return Err(LinkError::Stopping);
                    }
                    if Instant::now() >= deadline {
                        let after = self.write_timeout;
                        self.close(format!("it took no more bytes for {after:?}"));
                        let path = self.path().to_owned();
                        return Err(LinkError::Stalled { path, after });
                    }
                }
                Err(e) => break Some(e),
            }
        };
        match failure {
            None => {
                prove(&mut self.proven, &mut self.delay);
                Ok(())
            }
            Some(source) => Err(self.lost(source)),
        }
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

    /// The next frame from what the device has sent, reading what it has without waiting.
    /// `Ok(None)`: nothing more for now.
    pub(crate) fn next(&mut self) -> Result<Option<Arrival<'_>>, LinkError> {
        if self.start == self.end && !self.fill()? {
            return Ok(None);
        }
        let input = &self.read[self.start..self.end];
        let (used, arrival) = match self.deframer.feed(input) {
            Feed::NeedMore => (input.len(), Arrival::Partial),
            Feed::Frame { frame, rest } => (input.len() - rest.len(), Arrival::Frame(frame)),
            Feed::Error { error, rest } => (input.len() - rest.len(), Arrival::Damaged(error)),
        };
        self.start += used;
        if let Arrival::Frame(_) = arrival {
            prove(&mut self.proven, &mut self.delay);
        }
        Ok(Some(arrival))
    }

    /// Reads what the device has (if anything); whether bytes arrived.
    fn fill(&mut self) -> Result<bool, LinkError> {
        // Only what is there already: a read must not wait. A device that went away (a
        // closed pseudo-terminal, an unplugged adapter) polls as ready with nothing to
        // read: only the read tells.
        if !self.wait_readable(Duration::ZERO) {
            return Ok(false);
        }
        let Some(port) = self.port.as_mut() else {
            return Ok(false);
        };
        match port.read(&mut self.read[..]) {
            Ok(0) => Err(self.lost(ErrorKind::UnexpectedEof.into())),
            Ok(n) => {
                self.start = 0;
                self.end = n;
                Ok(true)
            }
            Err(e) if is_not_yet(&e) => Ok(false),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Closes the device after `source` and says so.
    fn lost(&mut self, source: std::io::Error) -> LinkError {
        self.close(format!("it failed: {source}"));
        LinkError::Lost {
            path: self.path().to_owned(),
            source,
        }
    }
}

/// The open device carried a frame: its next loss starts the backoff over. (On fields, not
/// `self`: a frame read still borrows the deframer.)
fn prove(proven: &mut bool, delay: &mut Duration) {
    if !*proven {
        *proven = true;
        *delay = FIRST_REOPEN;
    }
}

/// Whether `error` only says "not now": no bytes or no room yet, or a signal.
fn is_not_yet(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}
