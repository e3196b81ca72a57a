//! zmqrpc's protocol without I/O: how messages are written and read ([`dialect`]), and the
//! state of a caller's many calls in flight ([`calls`]). Nothing here opens a socket, reads
//! a clock or spawns a thread: a transport (libzmq in `zmqrpc-transport-std`, or another
//! runtime's) moves the bytes and tells these machines what happened, the way rumqttc's
//! `MqttState` sits beside its event loop. So every protocol path is unit-tested here
//! without libzmq, and a second transport reuses it unchanged.
//!
//! # Layout
//! - [`calls`]: [`Calls`](calls::Calls), the caller's side of many calls in flight:
//!   numbering, per-call deadlines, matching answers, late answers, cancellation and the
//!   bounds on calls and bytes in flight and queued.
//! - [`dialect`]: the wire-dialect seam, [`Dialect`](dialect::Dialect), through which
//!   everything that reads or writes a message goes; [`Native`](dialect::Native) (the core's
//!   frame); with the `pyzmqrpc3` feature, pyzmqrpc3's format and `Mixed` (both on one
//!   socket).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use zmqrpc_protocol::calls::{Calls, End, Limits};
//! use zmqrpc_protocol::dialect::{Addressee, Dialect, Native};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Add(i32, i32);
//! # impl zmqrpc_core::Command for Add { const NAME: &'static str = "add"; type Response = i32; }
//! use zmqrpc_core::Command;
//!
//! let mut calls: Calls<Vec<u8>> = Calls::new(Limits { in_flight: 16, queued: 64, bytes: 1 << 20 });
//! let (mut request, mut answer, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
//! // Number the call, write it, send it.
//! let deadline = Instant::now() + Duration::from_secs(1);
//! let seq = calls.submit(Add::KEY, 0, deadline)?;
//! Native.encode_call(seq, &Add(2, 3), &mut request, 1024)?;
//! assert_eq!(calls.next_to_send(), Some(seq));
//! // … a server answers …
//! let served = Native.read_request(&request, &mut scratch, 1024).unwrap();
//! Native.encode_response(&served.head, &5i32, &mut answer, 1024)?;
//! // Match the answer by its number, then decode it.
//! let view = Native.read_answer(&answer)?;
//! let Addressee::Call(tag) = view.to else { unreachable!() };
//! let reply = calls.answered(tag.seq, tag.key).expect("call in flight");
//! reply.extend_from_slice(&answer);
//! assert_eq!(calls.collect(seq), Some(End::Answered));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod calls;
pub mod dialect;
