//! Typed calls on top of the messaging layer, every byte through a
//! [`Dialect`](crate::Dialect): the [`server`] (services, dispatch, the worker pool), the
//! [`client`] and the [`pipeline`].

pub mod client;
pub mod pipeline;
pub mod server;
