//! The sockets that move bytes, with no idea of what the bytes mean beyond a heartbeat:
//! [`receiver`] (REP and SUB in, one thread, one [`MessageHandler`](receiver::MessageHandler)), the
//! `subscriber` side it shares with the worker `pool` (one receiving thread, many handlers;
//! `serving` picks one or the other for a server or proxy), [`publisher`] (XPUB out),
//! [`requester`] (REQ out) and [`sender`] (a publisher and/or a requester); `subscriptions`,
//! what a publisher knows of its subscribers' topics.

pub(crate) mod pool;
pub mod publisher;
pub mod receiver;
pub mod requester;
pub(crate) mod router;
pub mod sender;
pub(crate) mod serving;
pub(crate) mod subscriber;
pub mod subscriptions;
