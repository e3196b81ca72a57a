//! A ROUTER socket facing callers, as the loops that serve many calls at once use it (the
//! worker pool, the async server): a call read with the envelope its answer goes back
//! behind, the answer sent behind it, the caller's `User-Id`.

use crate::auth::Verifier;
use crate::socket::options::SocketOptions;
use crate::TransportError;

/// Binds a ROUTER to `endpoints` (none: no socket), verifying its peers with `verifier`;
/// the socket and the endpoints as bound.
pub(crate) fn bind(
    ctx: &zmq::Context,
    options: &SocketOptions,
    verifier: Option<&Verifier>,
    endpoints: &[String],
) -> Result<(Option<zmq::Socket>, Vec<String>), TransportError> {
    if endpoints.is_empty() {
        return Ok((None, Vec::new()));
    }
    let (socket, endpoints) = options.bound_socket(ctx, zmq::ROUTER, verifier, endpoints)?;
    Ok((Some(socket), endpoints))
}

/// What [`read_call`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Nothing waiting.
    Nothing,
    /// A call: its envelope (up to the empty delimiter) and its one part.
    Call,
    /// A call of several parts after the delimiter: only the last is kept, to refuse it.
    Multipart,
    /// No delimiter: not from a REQ or a delimiting DEALER, so no one to answer.
    Undelimited,
}

/// Reads the next message from `frontend` without waiting: `[routing id…][empty][body]`,
/// the envelope (delimiter included) into `envelope` (emptied first), the body into `body`.
pub(crate) fn read_call(
    frontend: &zmq::Socket,
    envelope: &mut Vec<zmq::Message>,
    body: &mut zmq::Message,
) -> Result<Read, TransportError> {
    let err = |e| TransportError::new("recv", "ROUTER", e);
    envelope.clear();
    match frontend.recv(body, zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(Read::Nothing),
        Err(e) => return Err(err(e)),
    }
    let mut delimited = false;
    let mut parts_after = 0;
    while body.get_more() {
        let mut next = zmq::Message::new();
        frontend.recv(&mut next, zmq::DONTWAIT).map_err(err)?;
        let part = std::mem::replace(body, next);
        if delimited {
            parts_after += 1;
        } else {
            delimited = part.is_empty();
            envelope.push(part);
        }
    }
    Ok(match (delimited, parts_after) {
        (false, _) => {
            envelope.clear();
            Read::Undelimited
        }
        (true, 0) => Read::Call,
        (true, _) => Read::Multipart,
    })
}

/// Sends `body` to a caller through `frontend` behind its `envelope` (consumed).
pub(crate) fn send_enveloped(
    frontend: &zmq::Socket,
    envelope: &mut Vec<zmq::Message>,
    body: &[u8],
) -> Result<(), TransportError> {
    let err = |e| TransportError::new("send", "ROUTER", e);
    for part in envelope.drain(..) {
        frontend
            .send(part, zmq::SNDMORE | zmq::DONTWAIT)
            .map_err(err)?;
    }
    frontend.send(body, zmq::DONTWAIT).map_err(err)
}

/// Copies `message`'s `User-Id` (set by the ZAP handler) into `user` on a `protected`
/// socket; clears it on an open one, where a message has none (and reading the property
/// would cost an allocation per message).
pub(crate) fn copy_user(message: &mut zmq::Message, protected: bool, user: &mut String) {
    user.clear();
    if protected {
        user.push_str(message.gets("User-Id").unwrap_or(""));
    }
}
