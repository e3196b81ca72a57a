//! Typed calls on top of the messaging layer, every byte through a
//! [`Dialect`](crate::Dialect): the [`server`] (services, dispatch, the worker pool), the
//! [`client`], the [`pipeline`], the [`shared`] client, and the [`receipt`] a call gets
//! back.

pub mod client;
pub mod pipeline;
pub mod receipt;
pub mod server;
pub mod shared;
