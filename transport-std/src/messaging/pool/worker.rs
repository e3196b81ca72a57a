//! The worker side of the pool and the tasks the broker sends it: what to do, where the
//! message came from, who sent it, the message.

use crate::messaging::receiver::{Incoming, MessageHandler, Origin, Rejection};
use crate::TransportError;

/// A task's first part: what to do, where the message came from.
///
/// | byte | meaning |
/// |---|---|
/// | 0 | `H` handle the message, `J` reject it as multipart, `X` end the worker |
/// | 1 | origin: 0 the ROUTER (answer expected), 1 a SUB socket |
/// | 2..6 | the SUB socket's index, little-endian |
pub(super) type TaskHeader = [u8; 6];

pub(super) const HANDLE: u8 = b'H';
pub(super) const REJECT: u8 = b'J';
pub(super) const END: u8 = b'X';

pub(super) fn task_header(what: u8, origin: Origin) -> TaskHeader {
    let (from, index) = match origin {
        Origin::Rep => (0, 0u32),
        Origin::Sub(index) => (1, u32::try_from(index).unwrap_or(u32::MAX)),
    };
    let i = index.to_le_bytes();
    [what, from, i[0], i[1], i[2], i[3]]
}

fn read_task_header(bytes: &[u8]) -> Option<(u8, Origin)> {
    match *bytes {
        [what, 0, ..] => Some((what, Origin::Rep)),
        [what, 1, i0, i1, i2, i3] => Some((
            what,
            Origin::Sub(u32::from_le_bytes([i0, i1, i2, i3]) as usize),
        )),
        _ => None,
    }
}

/// A worker's routing id on the backend: `w` and its index.
pub(super) fn worker_id(index: usize) -> [u8; 3] {
    let i = u16::try_from(index).unwrap_or(u16::MAX).to_be_bytes();
    [b'w', i[0], i[1]]
}

/// A worker's thread name.
/// Worker `index`'s REQ socket, connected to the broker's backend at `endpoint`.
pub(super) fn connect_worker(
    ctx: &zmq::Context,
    endpoint: &str,
    index: usize,
) -> Result<zmq::Socket, TransportError> {
    let err = |op| move |e| TransportError::new(op, endpoint, e);
    let socket = ctx.socket(zmq::REQ).map_err(err("socket"))?;
    socket.set_linger(0).map_err(err("set_linger"))?;
    socket
        .set_identity(&worker_id(index))
        .map_err(err("set_identity"))?;
    socket.connect(endpoint).map_err(err("connect"))?;
    Ok(socket)
}

pub(super) fn worker_thread(index: usize) -> String {
    format!("zmqrpc-worker-{index}")
}

pub(super) fn worker_index(id: &[u8]) -> Option<usize> {
    match *id {
        [b'w', hi, lo] => Some(usize::from(u16::from_be_bytes([hi, lo]))),
        _ => None,
    }
}

/// Sends a task to `worker`: [id][empty][header][user][message].
pub(super) fn send_task(
    backend: &zmq::Socket,
    worker: usize,
    header: TaskHeader,
    user: &str,
    message: &[u8],
) -> Result<(), TransportError> {
    let err = |e| TransportError::new("send", "worker pool backend", e);
    let more = zmq::SNDMORE | zmq::DONTWAIT;
    backend.send(&worker_id(worker)[..], more).map_err(err)?;
    backend.send(&b""[..], more).map_err(err)?;
    backend.send(&header[..], more).map_err(err)?;
    backend.send(user.as_bytes(), more).map_err(err)?;
    backend.send(message, zmq::DONTWAIT).map_err(err)
}

/// A worker: asks for a task, runs it through `handler`, answers (which asks for the next).
pub(super) fn work<H: MessageHandler>(
    socket: &zmq::Socket,
    mut handler: H,
) -> Result<(), TransportError> {
    let err = |op| move |e| TransportError::new(op, "worker pool backend", e);
    let mut header = zmq::Message::new();
    let mut user = zmq::Message::new();
    let mut message = zmq::Message::new();
    let mut reply = Vec::with_capacity(256);
    socket.send(&b""[..], 0).map_err(err("send"))?; // free
    loop {
        // [header][user][message], as `send_task` sends it.
        for part in [&mut header, &mut user, &mut message] {
            socket.recv(part, 0).map_err(err("recv"))?;
            if !part.get_more() {
                break;
            }
        }
        let Some((what, origin)) = read_task_header(&header) else {
            return Err(TransportError::Internal {
                what: "a pool worker got a task header its broker does not send",
            });
        };
        reply.clear();
        match what {
            END => return Ok(()),
            REJECT => handler.reject(Rejection::Multipart, origin, &mut reply),
            _ => {
                let user_id = std::str::from_utf8(&user).ok().filter(|u| !u.is_empty());
                handler.handle(
                    Incoming {
                        bytes: &message,
                        origin,
                        user_id,
                    },
                    &mut reply,
                );
            }
        }
        if origin != Origin::Rep {
            reply.clear();
        }
        socket.send(&reply[..], 0).map_err(err("send"))?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::super::Pool;
    use super::*;
    use crate::messaging::receiver::ReceiverBuilder;

    /// A task header the broker never sends is a broken invariant, not a libzmq failure.
    #[test]
    fn an_unreadable_task_is_an_internal_error() {
        let ctx = zmq::Context::new();
        let endpoint = "inproc://zmqrpc-pool-test-unreadable";
        let backend = ctx.socket(zmq::ROUTER).unwrap();
        backend.bind(endpoint).unwrap();
        let socket = ctx.socket(zmq::REQ).unwrap();
        socket.set_identity(&worker_id(0)).unwrap();
        socket.connect(endpoint).unwrap();
        let worker =
            std::thread::spawn(move || work(&socket, |_: Incoming<'_>, _: &mut Vec<u8>| {}));
        // The worker says it is free: [id][empty][empty].
        let free = backend.recv_multipart(0).unwrap();
        assert_eq!(free[0], worker_id(0));
        backend
            .send_multipart([&worker_id(0)[..], b"", b"??"], 0)
            .unwrap();
        assert!(matches!(
            worker.join().unwrap(),
            Err(TransportError::Internal { .. })
        ));
    }

    /// A worker's panic ends it; the pool reports it by thread, with the panic's message.
    #[test]
    fn a_worker_panic_is_reported_with_its_message() {
        let (entered_tx, entered) = mpsc::channel();
        let handler = move |_: Incoming<'_>, _: &mut Vec<u8>| {
            let _ = entered_tx.send(());
            panic!("boom");
        };
        let builder = ReceiverBuilder::default().rep("tcp://127.0.0.1:*");
        let pool = Pool::bind(builder, vec![handler], super::super::Pick::Rested).unwrap();
        let endpoint = pool.endpoints()[0].clone();
        let shutdown = pool.shutdown();
        let running = std::thread::spawn(move || pool.run());

        let ctx = zmq::Context::new();
        let caller = ctx.socket(zmq::REQ).unwrap();
        caller.set_linger(0).unwrap();
        caller.connect(&endpoint).unwrap();
        caller.send(&b"x"[..], 0).unwrap();
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        shutdown.request();
        assert_eq!(
            running.join().unwrap(),
            Err(TransportError::Panicked {
                thread: "zmqrpc-worker-0".to_owned(),
                message: "boom".to_owned(),
            })
        );
    }
}
