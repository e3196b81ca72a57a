//! Encoding frames into reusable `Vec`s: the core encodes into slices, this grows the slice.

use serde::Serialize;
use zmqrpc_core::{frame, EncodeError, ErrorCode, Header, RemoteError};

/// Encodes `header` and `body` into `out` (replacing its contents), growing it up to `max`
/// bytes. Allocation-free once `out` has grown to the largest frame seen.
pub(crate) fn encode_to_vec<T: Serialize + ?Sized>(
    header: &Header,
    body: &T,
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), EncodeError> {
    let mut size = out.capacity().clamp(64, max.max(64));
    loop {
        out.resize(size, 0);
        match frame::encode(header, body, out) {
            Ok(bytes) => {
                let len = bytes.len();
                out.truncate(len);
                return Ok(());
            }
            Err(EncodeError::BufferTooSmall) if size < max => size = (size * 2).min(max),
            Err(e) => {
                out.clear();
                return Err(e);
            }
        }
    }
}

/// Encodes an error answer to `request` into `out`. Never fails: an error message always fits.
pub(crate) fn encode_error(request: &Header, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    let error = RemoteError::new(code, message);
    // An error frame is at most a few hundred bytes, so only a broken serializer fails here;
    // the reply is then empty, which a client reports as a bad frame.
    let _ = encode_to_vec(&request.error(), &error, out, 1024);
}

/// The largest frame a socket option set allows, for encoding limits.
pub(crate) fn max_frame(max_message_size: Option<u64>) -> usize {
    max_message_size
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(64 << 20)
}
