//! The wire-dialect seam: how message bytes become requests and answers, and back.
//!
//! Everything in zmqrpc that reads or writes a message goes through a [`Dialect`]: the
//! server's dispatch (and its type-erased services, which get their command from the
//! dialect), the client, the pipeline, both proxies and the buffered proxy's judgement of
//! downstream answers. The loops under them (receiver, worker pool, requester, publisher)
//! move bytes and never look inside, except to recognise a heartbeat, which the dialect
//! names too. [`Native`] (the core's frame: a 14-byte header and a postcard body) is the
//! first dialect and the default everywhere.
//!
//! The trait is cut so that the protocol a client needs — [`Dialect::encode_call`], then
//! [`interpret`] on whatever comes back — works on byte slices alone, without a libzmq
//! type: an async client on another runtime can reuse it unchanged. A dialect whose
//! commands are named by a string and whose bodies are JSON fits the same methods: it names
//! the command by [`Key::of`] its name (the same key the server's table is indexed by), and
//! decodes a compressed body into the `scratch` buffer [`Dialect::read_request`] lends it.
//! Two dialects on one socket are one dialect that tells them apart by their first bytes.
//!
//! With the `pyzmqrpc3` feature, `Pyzmqrpc3` speaks the Python package's format (named
//! commands, JSON in zlib and base64) and `Mixed` takes both on one socket, answering each
//! message in the dialect it came in.

#[cfg(feature = "pyzmqrpc3")]
pub mod mixed;
mod native;
#[cfg(feature = "pyzmqrpc3")]
pub mod pyzmqrpc3;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zmqrpc_core::{Command, DecodeError, EncodeError, ErrorCode, Key, RemoteError};

#[cfg(feature = "pyzmqrpc3")]
pub use mixed::{Mixed, MixedHead};

/// What servers and proxies speak unless told otherwise (`RpcServer::builder`,
/// `Proxy::builder`, `BufferedProxy::builder` of `zmqrpc-transport-std`): `Mixed` with the
/// `pyzmqrpc3` feature (native frames and pyzmqrpc3's messages on one socket, each answered
/// in its own), [`Native`] without it. Clients and pipelines speak [`Native`] unless told
/// otherwise.
#[cfg(feature = "pyzmqrpc3")]
pub type DefaultDialect = Mixed;
/// What servers and proxies speak unless told otherwise: [`Native`] (with the `pyzmqrpc3`
/// feature, `Mixed`: native frames and pyzmqrpc3's messages on one socket).
#[cfg(not(feature = "pyzmqrpc3"))]
pub type DefaultDialect = Native;
pub use native::Native;
#[cfg(feature = "pyzmqrpc3")]
pub use pyzmqrpc3::{error_code, status_code, Pyzmqrpc3, ACCEPTED_MESSAGE, PYZMQRPC3_HEARTBEAT};

/// A wire format: how requests, answers and heartbeats are written.
///
/// Implementations are cheap to clone (a unit struct, or a few settings) and stateless per
/// message: every method works on the bytes it is given.
pub trait Dialect: Clone + Send + Sync + 'static {
    /// What a server keeps of a request to address its answer (the native dialect keeps the
    /// frame header: the answer repeats its sequence number and key).
    type Head: Copy + std::fmt::Debug + Send + 'static;

    /// The heartbeat a sender publishes to keep its subscribers' silence timeouts quiet.
    const HEARTBEAT: &'static [u8];

    /// Whether the answers this dialect reads name the call they answer
    /// ([`Addressee::Call`]), so that many calls can share a connection and be matched by
    /// number. A dialect whose answers carry no number can only call one at a time per
    /// socket: a pipeline or a shared client refuses it.
    const NUMBERS_ANSWERS: bool = true;

    /// Whether `message` is a heartbeat; if so, what a REP socket answers (a heartbeat on
    /// SUB is absorbed). A loop calls this before anything else: a heartbeat never reaches
    /// a handler.
    fn heartbeat_answer(message: &[u8]) -> Option<&'static [u8]>;

    // The serving side: servers and proxies.

    /// Reads a request or a notification. Anything else (an answer, garbage, a version this
    /// end does not speak) is a [`Refusal`] carrying the error answer to send. `scratch` is
    /// the caller's reusable buffer, for a dialect that must decode the body before it can
    /// lend it (the native one does not use it).
    ///
    /// A command whose decoded form is over `max_body` bytes (the native body; pyzmqrpc3's
    /// whole inflated JSON) is refused with [`ErrorCode::TooLarge`]. A dialect that inflates
    /// stops inflating there, so a compressed bomb costs at most `max_body` bytes, and
    /// `scratch` never keeps more than that.
    fn read_request<'a>(
        &self,
        bytes: &'a [u8],
        scratch: &'a mut Vec<u8>,
        max_body: usize,
    ) -> Result<Request<'a, Self::Head>, Refusal<Self::Head>>;

    /// Decodes the command of a request [`read_request`](Dialect::read_request) returned.
    fn decode_command<C: Command>(
        &self,
        request: &Request<'_, Self::Head>,
    ) -> Result<C, DecodeError>;

    /// Writes the successful answer `response` to the request `head` into `out` (replacing
    /// its contents), at most `max` bytes. Allocation-free once `out` has grown to the
    /// largest answer.
    fn encode_response<R: Serialize + ?Sized>(
        &self,
        head: &Self::Head,
        response: &R,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError>;

    /// Writes the error answer `code`/`message` to the request `head` into `out`. Never
    /// fails: an error answer always fits (a message too long is cut).
    fn encode_error(&self, head: &Self::Head, code: ErrorCode, message: &str, out: &mut Vec<u8>);

    /// Writes the answer of a store-and-forward hop to the request `head`: it took the call
    /// on (queued it, published it) and its response, if the command has one, will not come
    /// back. A caller reads it as [`Says::Accepted`], never as a response.
    fn encode_accepted(&self, head: &Self::Head, out: &mut Vec<u8>);

    /// The head of an answer to a message that could not be read at all (several parts):
    /// its caller takes it whatever it asked.
    fn unreadable(&self) -> Self::Head;

    // The calling side: clients, pipelines and the buffered proxy's judgement.

    /// Writes call number `seq` of `command` into `out` (replacing its contents), at most
    /// `max` bytes; returns what its answer will be matched by.
    fn encode_call<C: Command>(
        &self,
        seq: u32,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<CallTag, EncodeError>;

    /// Writes a one-way notification of `command` into `out`, at most `max` bytes.
    fn encode_notify<C: Command>(
        &self,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError>;

    /// Reads an answer: which call it answers and what it says, its value still encoded.
    fn read_answer<'a>(&self, bytes: &'a [u8]) -> Result<AnswerView<'a>, DecodeError>;

    /// Decodes the value of a successful answer.
    fn decode_response<R: DeserializeOwned>(&self, body: &[u8]) -> Result<R, DecodeError>;
}

/// A request (or notification) as a dialect read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a, H> {
    /// What its answer is addressed by.
    pub head: H,
    /// The command's key: the table index of the service that serves it.
    pub key: Key,
    /// The caller's number for this call (0 for a notification, or where the dialect has
    /// none).
    pub seq: u32,
    /// The command, still encoded.
    pub body: &'a [u8],
}

/// Why a message is not a request a server or proxy takes, and the error answer it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal<H> {
    /// The head to answer by: the message's own, or the dialect's
    /// [`unreadable`](Dialect::unreadable) one.
    pub head: H,
    /// The error code of the answer.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

impl<H> Refusal<H> {
    /// Whether the message was refused for its size ([`ErrorCode::TooLarge`]): counted as
    /// `too_large`, not as a bad frame.
    pub fn is_too_large(&self) -> bool {
        self.code == ErrorCode::TooLarge
    }

    /// Writes the error answer into `out`.
    pub fn answer<D: Dialect<Head = H>>(&self, dialect: &D, out: &mut Vec<u8>) {
        dialect.encode_error(&self.head, self.code, &self.message, out);
    }
}

/// What identifies a call's answer: its sequence number and command key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallTag {
    /// The call's sequence number.
    pub seq: u32,
    /// The command's key.
    pub key: Key,
}

/// Which call an answer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addressee {
    /// The call with this tag.
    Call(CallTag),
    /// Whichever call waits for it: the error answer to a request that could not be read,
    /// or an answer in a dialect whose answers carry no number (one call at a time per
    /// socket pairs them).
    Anyone,
}

/// An answer as a dialect read it.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerView<'a> {
    /// The call it answers.
    pub to: Addressee,
    /// What it says.
    pub says: Says<'a>,
}

/// What an answer says.
#[derive(Clone, Debug, PartialEq)]
pub enum Says<'a> {
    /// A success: the encoded response, decoded by whoever knows its type.
    Response(&'a [u8]),
    /// A store-and-forward hop (a buffered proxy, a proxy that publishes) took the call on
    /// and will pass it on; the response, if the command has one, will not come back.
    Accepted,
    /// What the far side said went wrong.
    Error(RemoteError),
}

impl AnswerView<'_> {
    /// Whether this answers the call `call`.
    pub fn answers(&self, call: &CallTag) -> bool {
        match self.to {
            Addressee::Call(tag) => tag == *call,
            Addressee::Anyone => true,
        }
    }

    /// What the answer means to a call that expects an `R`, a response decoded by
    /// `dialect` (whether it is this call's answer is [`answers`](Self::answers)'
    /// question).
    pub fn meaning<D: Dialect, R: DeserializeOwned>(self, dialect: &D) -> Interpretation<R> {
        match self.says {
            Says::Response(body) => match dialect.decode_response(body) {
                Ok(response) => Interpretation::Answer(Ok(response)),
                Err(error) => Interpretation::Unreadable(error),
            },
            Says::Accepted => Interpretation::Accepted,
            Says::Error(error) => Interpretation::Answer(Err(error)),
        }
    }
}

/// What an answer means to a call.
#[derive(Clone, Debug, PartialEq)]
pub enum Interpretation<R> {
    /// The call's result: the response, or what the far side said went wrong.
    Answer(Result<R, RemoteError>),
    /// A store-and-forward hop took the call on; its response does not come back (see
    /// [`Says::Accepted`]).
    Accepted,
    /// The answer belongs to another call (a late one, from before a socket was made anew).
    Stray,
    /// The bytes are not an answer in this dialect, or its value is not an `R`.
    Unreadable(DecodeError),
}

/// The value of a response type that carries nothing (`()`, a unit struct): what a call of
/// such a command returns when a store-and-forward hop accepted it, as no response is
/// lost. `None` for a type with something in it: the caller is told its call was accepted
/// instead of being handed a value nobody sent.
pub fn empty_response<R: DeserializeOwned>() -> Option<R> {
    zmqrpc_core::frame::decode_body(&[]).ok()
}

/// What `bytes` mean to the call `call`: the whole client-side protocol after
/// [`Dialect::encode_call`], on bytes alone.
///
/// ```
/// use zmqrpc_core::{ErrorCode, Key};
/// use zmqrpc_protocol::dialect::{interpret, Dialect, Interpretation, Native};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Add(i32, i32);
/// # impl zmqrpc_core::Command for Add { const NAME: &'static str = "add"; type Response = i32; }
/// let (mut call, mut answer, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
/// let tag = Native.encode_call(7, &Add(2, 3), &mut call, 1024)?;
/// // … the server reads `call` and answers …
/// let request = Native.read_request(&call, &mut scratch, 1024).unwrap();
/// Native.encode_response(&request.head, &5i32, &mut answer, 1024)?;
/// assert_eq!(interpret::<_, i32>(&Native, &tag, &answer), Interpretation::Answer(Ok(5)));
/// # Ok::<(), zmqrpc_core::EncodeError>(())
/// ```
pub fn interpret<D: Dialect, R: DeserializeOwned>(
    dialect: &D,
    call: &CallTag,
    bytes: &[u8],
) -> Interpretation<R> {
    let answer = match dialect.read_answer(bytes) {
        Ok(answer) => answer,
        Err(error) => return Interpretation::Unreadable(error),
    };
    if !answer.answers(call) {
        return Interpretation::Stray;
    }
    answer.meaning(dialect)
}
