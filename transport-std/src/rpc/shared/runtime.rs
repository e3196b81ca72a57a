//! How a blocking call meets an async runtime it may be called from: moved off the runtime
//! where the runtime allows it, refused where it would stall it.

use crate::CallError;

/// Runs `wait`, a caller's blocking wait for its call, where it cannot stall an async
/// runtime: as it is outside one; inside a multi-thread tokio runtime, through
/// `block_in_place` (the runtime hands its other tasks to another worker first); on a
/// current-thread runtime, not at all ([`CallError::BlockingInRuntime`]: the runtime's one
/// thread would wait for itself).
///
/// Without the `tokio` feature no runtime can be told, and `wait` runs as it is.
pub(super) fn blocking<R>(wait: impl FnOnce() -> R) -> Result<R, CallError> {
    #[cfg(feature = "tokio")]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        return match runtime.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(wait)),
            _ => Err(CallError::BlockingInRuntime),
        };
    }
    Ok(wait())
}
