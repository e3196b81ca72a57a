//! What every socket and every loop shares: [`options`], how a loop stops ([`shutdown`]),
//! socket monitors, counters, and the small helpers below, kept here once.

pub(crate) mod monitor;
#[allow(unsafe_code)]
pub(crate) mod nodrop;
pub mod options;
pub mod shutdown;
pub(crate) mod stats;
