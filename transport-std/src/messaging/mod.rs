//! The sockets that move bytes, with no idea of what the bytes mean beyond a heartbeat:
//! [`receiver`] (REP and SUB in, one thread, one [`MessageHandler`](receiver::MessageHandler)), the
//! `subscriber` side it shares with the worker pool, [`publisher`] (XPUB out),
//! [`requester`] (REQ out) and [`sender`] (a publisher and/or a requester); `subscriptions`,
//! what a publisher knows of its subscribers' topics.

pub mod publisher;
pub mod receiver;
pub mod requester;
pub mod sender;
pub(crate) mod subscriber;
pub mod subscriptions;
