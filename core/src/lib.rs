//! The protocol core of zmqrpc: `no_std`, no allocator, no sockets.
//!
//! A client and a server agree on [`Command`]s: plain serde types with a name and a
//! response type. Each message between them is one [`frame`]: a 14-byte [`Header`]
//! (version, [`Kind`], sequence number, the command's [`Key`]) and a postcard body, encoded
//! into a buffer the caller owns and decoded without copying. Failures on the far side
//! travel as a [`RemoteError`]. Transports keep what they cannot send yet in a
//! [`BoundedQueue`], which never drops an item without handing it back and counting it, and
//! the same frames cross a serial link through [`stream`] framing (COBS over
//! `embedded-io`). The libzmq transport lives in `zmqrpc-transport-std`.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use zmqrpc_core::{frame, Command, Frame, Header, Kind};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct SetLed { on: bool }
//! impl Command for SetLed {
//!     const NAME: &'static str = "led.set";
//!     type Response = ();
//! }
//!
//! let mut buf = [0u8; 64];
//! let bytes = frame::encode(&Header::request(1, SetLed::KEY), &SetLed { on: true }, &mut buf)?;
//! let frame = Frame::decode(bytes)?;
//! assert_eq!(frame.header.kind, Kind::Request);
//! assert_eq!(frame.header.key, SetLed::KEY);
//! assert_eq!(frame.body::<SetLed>()?, SetLed { on: true });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - [`key`]: [`Key`], FNV-1a 64 of a command name, computed at compile time.
//! - [`command`]: the [`Command`] trait.
//! - [`frame`]: the wire frame; [`Header`], [`Frame`], [`frame::encode`], their errors.
//! - [`nesting`]: the depth limit every body is decoded under ([`nesting::MAX_NESTING`]).
//! - [`remote_error`]: [`RemoteError`] and its [`ErrorCode`].
//! - [`queue`]: [`BoundedQueue`] and its [`OverflowPolicy`].
//! - [`stream`]: COBS stream framing over `embedded-io`.
//! - [`device`]: [`DeviceServer`](device::DeviceServer), a typed server for a
//!   microcontroller: handlers by command, answers and errors, over stream framing.
//!
//! # Features
#![doc = document_features::document_features!()]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod command;
pub mod device;
pub mod frame;
pub mod key;
pub mod nesting;
pub mod queue;
pub mod remote_error;
pub mod stream;

pub use command::Command;
pub use frame::{DecodeError, EncodeError, Frame, Header, Kind, HEADER_LEN, HEARTBEAT, VERSION};
pub use key::Key;
pub use queue::{BoundedQueue, Full, OverflowPolicy, Pushed};
pub use remote_error::{ErrorCode, RemoteError, MAX_ERROR_MESSAGE};
pub use stream::{Deframer, Feed, FrameReader, FrameWriter, StreamError};
