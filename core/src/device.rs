//! [`DeviceServer`]: a typed server for a microcontroller, on the same frames as the host.
//!
//! A firmware registers one handler per [`Command`] (a closure wrapped by [`on`]), up to `N`
//! of them, each borrowed for the server's lifetime: nothing is allocated. The server reads
//! request frames (from [`stream`](crate::stream) framing over a UART, or any bytes), runs
//! the handler for the frame's key and writes the answer: the typed reply, or a
//! [`RemoteError`] for an unknown command, a frame that does not decode, or a handler that
//! failed. Notifications run their handler and get no answer; heartbeats are echoed. Damaged
//! input is counted in [`DeviceStats`] and skipped: the server never panics on what arrives,
//! and the link is back in step at the next frame. The device sends its own notifications
//! (sensor samples) with [`notify`].
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use zmqrpc_core::device::{on, DeviceServer, Failure};
//! use zmqrpc_core::{frame, Command, Frame, Header};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SetLed { on: bool }
//! impl Command for SetLed { const NAME: &'static str = "led.set"; type Response = bool; }
//!
//! let mut led = false;
//! let mut set_led = on(|c: SetLed| { led = c.on; Ok::<_, Failure>(led) });
//! let mut server: DeviceServer<'_, 4> = DeviceServer::new();
//! server.register(&mut set_led).unwrap();
//!
//! // A request as the host sends it, and the server's answer.
//! let mut request = [0u8; 32];
//! let request = frame::encode(&Header::request(7, SetLed::KEY), &SetLed { on: true }, &mut request)?;
//! let mut answer = [0u8; 64];
//! let answer = server.dispatch(request, &mut answer).unwrap();
//! assert_eq!(Frame::decode(answer)?.outcome::<bool>(), Ok(Ok(true)));
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use core::fmt;
use core::marker::PhantomData;

use embedded_io::{Read, Write};
use serde::{Deserialize, Serialize};

use crate::stream::{FrameReader, FrameWriter, StreamError};
use crate::{frame, Command, DecodeError, ErrorCode, Frame, Header, Key, Kind, RemoteError};

/// A handler failed; its message goes back to the caller in a `ServiceFailed` error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Failure(pub &'static str);

/// The name of [`CommandHandler`] before 0.1's renames, kept so that code written against
/// it builds.
#[doc(hidden)]
pub use self::CommandHandler as Handler;

/// A handler for one command type, its command type erased so handlers of every type share
/// one table. Made by [`on`].
pub trait CommandHandler {
    /// The key of the command it serves.
    fn key(&self) -> Key;
    /// The name of the command it serves.
    fn name(&self) -> &'static str;
    /// Serves the request in `frame`; writes the answer to `out` if `answer`, returns how it
    /// went and, with an answer, its length.
    fn serve(&mut self, frame: &Frame<'_>, out: &mut [u8], answer: bool) -> (Outcome, usize);
}

/// How one request went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The handler answered.
    Served,
    /// The handler failed.
    Failed,
    /// The request's body did not decode as the command.
    BadFrame,
}

/// A closure `FnMut(C) -> Result<C::Response, Failure>` as a [`CommandHandler`] for command `C`.
pub struct On<C, F> {
    f: F,
    command: PhantomData<fn(C)>,
}

/// Wraps `f` as the handler of command `C`: `on(|c: SetLed| Ok(..))`.
pub fn on<C, F>(f: F) -> On<C, F>
where
    C: Command,
    F: FnMut(C) -> Result<C::Response, Failure>,
{
    On {
        f,
        command: PhantomData,
    }
}

impl<C, F> CommandHandler for On<C, F>
where
    C: Command,
    F: FnMut(C) -> Result<C::Response, Failure>,
{
    fn key(&self) -> Key {
        C::KEY
    }

    fn name(&self) -> &'static str {
        C::NAME
    }

    fn serve(&mut self, request: &Frame<'_>, out: &mut [u8], answer: bool) -> (Outcome, usize) {
        let header = request.header;
        let command: C = match request.body() {
            Ok(command) => command,
            Err(e) => {
                return (
                    Outcome::BadFrame,
                    error_answer(&header, ErrorCode::BadFrame, &e, out, answer),
                )
            }
        };
        match (self.f)(command) {
            Ok(response) if answer => match frame::encode(&header.reply(), &response, out) {
                Ok(bytes) => (Outcome::Served, bytes.len()),
                Err(_) => {
                    let why = "the answer does not fit the answer buffer";
                    (
                        Outcome::Failed,
                        error_answer(&header, ErrorCode::ServiceFailed, &why, out, true),
                    )
                }
            },
            Ok(_) => (Outcome::Served, 0),
            Err(Failure(why)) => (
                Outcome::Failed,
                error_answer(&header, ErrorCode::ServiceFailed, &why, out, answer),
            ),
        }
    }
}

/// Writes the error answer `code`/`message` to `request` into `out`; its length (0 if no
/// answer is due or it does not fit).
fn error_answer(
    request: &Header,
    code: ErrorCode,
    message: &dyn fmt::Display,
    out: &mut [u8],
    answer: bool,
) -> usize {
    if !answer {
        return 0;
    }
    let mut text = heapless::String::<{ crate::MAX_ERROR_MESSAGE }>::new();
    // A message longer than the error's capacity is cut: `write!` stops where it is full.
    let _ = fmt::write(&mut text, format_args!("{message}"));
    let error = RemoteError::new(code, &text);
    frame::encode(&request.error(), &error, out).map_or(0, <[u8]>::len)
}

/// A handler could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegisterError {
    /// The table already holds its `N` handlers.
    Full,
    /// A handler for a command with this key is already registered.
    DuplicateKey {
        /// The command being registered.
        name: &'static str,
        /// The command already registered with the same key.
        existing: &'static str,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Full => f.write_str("the handler table is full"),
            RegisterError::DuplicateKey { name, existing } => {
                write!(f, "command {name} has the same key as {existing}")
            }
        }
    }
}

impl core::error::Error for RegisterError {}

/// What a [`DeviceServer`] has seen. Serializable, so a firmware can answer a host's
/// request for it as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceStats {
    /// Requests and notifications whose handler answered.
    pub served: u32,
    /// Requests and notifications whose handler failed.
    pub failed: u32,
    /// Requests for a key no handler is registered for.
    pub unknown: u32,
    /// Frames that did not decode (or were not requests).
    pub bad_frames: u32,
    /// Frames lost on the link: damaged or too large for the reader, skipped.
    pub link_errors: u32,
    /// Heartbeats echoed.
    pub heartbeats: u32,
}

/// A device's typed server; see the [module docs](self).
pub struct DeviceServer<'a, const N: usize> {
    handlers: heapless::Vec<&'a mut dyn CommandHandler, N>,
    stats: DeviceStats,
}

impl<const N: usize> Default for DeviceServer<'_, N> {
    fn default() -> Self {
        DeviceServer::new()
    }
}

impl<'a, const N: usize> DeviceServer<'a, N> {
    /// A server with room for `N` handlers.
    pub const fn new() -> Self {
        DeviceServer {
            handlers: heapless::Vec::new(),
            stats: DeviceStats {
                served: 0,
                failed: 0,
                unknown: 0,
                bad_frames: 0,
                link_errors: 0,
                heartbeats: 0,
            },
        }
    }

    /// Registers `handler`; refuses a second handler for one key, or more than `N`.
    pub fn register(&mut self, handler: &'a mut dyn CommandHandler) -> Result<(), RegisterError> {
        let key = handler.key();
        if let Some(existing) = self.handlers.iter().find(|h| h.key() == key) {
            return Err(RegisterError::DuplicateKey {
                name: handler.name(),
                existing: existing.name(),
            });
        }
        self.handlers.push(handler).map_err(|_| RegisterError::Full)
    }

    /// What the server has seen so far.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// Serves one frame; returns the answer written into `out`, if one is due (requests and
    /// heartbeats get one, notifications none). Never panics, whatever `bytes` hold.
    pub fn dispatch<'o>(&mut self, bytes: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
        let request = match Frame::decode(bytes) {
            Ok(request) => request,
            Err(error) => {
                self.stats.bad_frames += 1;
                let code = match error {
                    DecodeError::UnknownVersion(_) => ErrorCode::VersionMismatch,
                    _ => ErrorCode::BadFrame,
                };
                let len = error_answer(&Header::UNREADABLE, code, &error, out, true);
                return answered(out, len);
            }
        };
        let header = request.header;
        let answer = match header.kind {
            Kind::Request => true,
            Kind::Notify => false,
            Kind::Heartbeat => {
                self.stats.heartbeats += 1;
                let heartbeat = out.get_mut(..frame::HEARTBEAT.len())?;
                heartbeat.copy_from_slice(&frame::HEARTBEAT);
                return Some(heartbeat);
            }
            Kind::Reply | Kind::Error | Kind::Accepted => {
                self.stats.bad_frames += 1;
                return None;
            }
        };
        let Some(handler) = self.handlers.iter_mut().find(|h| h.key() == header.key) else {
            self.stats.unknown += 1;
            let len = error_answer(
                &header,
                ErrorCode::UnknownCommand,
                &"no handler for this command",
                out,
                answer,
            );
            return answered(out, len);
        };
        let (outcome, len) = handler.serve(&request, out, answer);
        match outcome {
            Outcome::Served => self.stats.served += 1,
            Outcome::Failed => self.stats.failed += 1,
            Outcome::BadFrame => self.stats.bad_frames += 1,
        }
        answered(out, len)
    }

    /// Reads the next frame from `reader`, serves it and writes its answer to `writer`,
    /// `out` holding the answer. A frame damaged on the link is counted and skipped (and
    /// the next one read); only the stream's own failure or end is returned.
    pub fn serve_next<R, W, const F: usize, const RB: usize, const WB: usize>(
        &mut self,
        reader: &mut FrameReader<R, F, RB>,
        writer: &mut FrameWriter<W, WB>,
        out: &mut [u8],
    ) -> Result<(), ServeError<R::Error, W::Error>>
    where
        R: Read,
        W: Write,
    {
        loop {
            match reader.read_frame() {
                Ok(bytes) => {
                    if let Some(answer) = self.dispatch(bytes, out) {
                        writer.write_frame(answer).map_err(ServeError::Write)?;
                    }
                    return Ok(());
                }
                Err(StreamError::Oversize | StreamError::Corrupt) => self.stats.link_errors += 1,
                Err(error) => return Err(ServeError::Read(error)),
            }
        }
    }
}

fn answered(out: &[u8], len: usize) -> Option<&[u8]> {
    (len > 0).then(|| out.get(..len)).flatten()
}

/// Why [`DeviceServer::serve_next`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ServeError<R, W> {
    /// Reading failed or the stream ended.
    Read(StreamError<R>),
    /// Writing an answer failed.
    Write(StreamError<W>),
}

impl<R: fmt::Debug, W: fmt::Debug> fmt::Display for ServeError<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Read(e) => write!(f, "reading a request: {e:?}"),
            ServeError::Write(e) => write!(f, "writing an answer: {e:?}"),
        }
    }
}

/// Sends a notification of `command` from the device (a sensor sample, say), `buf` holding
/// the frame while it is encoded.
pub fn notify<C: Command + Serialize, W: Write, const WB: usize>(
    writer: &mut FrameWriter<W, WB>,
    command: &C,
    buf: &mut [u8],
) -> Result<(), StreamError<W::Error>> {
    let frame =
        frame::encode(&Header::notify(C::KEY), command, buf).map_err(|_| StreamError::Oversize)?;
    writer.write_frame(frame)
}
