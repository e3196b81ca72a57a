//! The spool file's format (version 2): what a record is on disk and how one is checked.
//! Pure functions on bytes, so every kind of damage can be tested without a file.
//!
//! Every record is [COBS]-encoded and ends with a `0x00` byte, as frames on a serial link
//! are ([`zmqrpc_core::stream`]): no zero occurs inside a record, so after damage the
//! reader is back in step at the next zero, having read each byte once, and no payload can
//! hide a record boundary. Decoded, a record is a tag, its payload and a check:
//!
//! | size | field |
//! |---|---|
//! | 1 | tag: `H` the file's header, `M` a message, `D` "the oldest message was delivered" |
//! | n | `H`: [`MAGIC`] and the file's 8-byte salt; `M`: the frame as received; `D`: nothing |
//! | 8 | FNV-1a 64 of the salt, the tag and the payload, little-endian (`H`: without salt) |
//!
//! The salt is random, made with the file and kept by compaction. A payload is whatever a
//! caller sent, so it may hold the bytes of a whole record; without the salt, which never
//! leaves the file, no caller can give those bytes a check that passes.
//!
//! A file of version 1 (records of a tag, a length and an unsalted check, no header, found
//! by replay resynchronising at every byte) starts with `M` or `D`, which no version-2 file
//! does: it is read up to its first damage and rewritten as version 2.
//!
//! [COBS]: https://en.wikipedia.org/wiki/Consistent_Overhead_Byte_Stuffing

use std::hash::{BuildHasher, Hasher};

use zmqrpc_core::key::{fnv1a64, fnv1a64_more, FNV1A64_START};
use zmqrpc_core::stream::{self, DELIMITER};

/// What an `H` record's payload starts with.
pub(super) const MAGIC: &[u8] = b"zmqrpc spool 2";

/// The tags.
pub(super) const HEADER: u8 = b'H';
pub(super) const MESSAGE: u8 = b'M';
pub(super) const DELIVERED: u8 = b'D';

/// Bytes of a check.
const CHECK: usize = 8;

/// A file's salt.
pub(super) type Salt = [u8; 8];

/// A new random salt (from the process's hash keys, which come from the OS).
pub(super) fn new_salt() -> Salt {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish().to_le_bytes()
}

/// The check of `tag` and `payload` under `salt`.
fn check(salt: Option<&Salt>, tag: u8, payload: &[u8]) -> u64 {
    let start = salt.map_or(FNV1A64_START, |salt| fnv1a64(salt));
    fnv1a64_more(fnv1a64_more(start, &[tag]), payload)
}

/// Bytes a record of a `payload_len`-byte payload takes on disk, its delimiter included.
pub(super) fn encoded_len(payload_len: usize) -> usize {
    stream::encoded_len(1 + payload_len + CHECK) + 1
}

/// Appends the record `tag`/`payload` to `out`, encoded and delimited. `scratch` is reused
/// for the decoded record.
pub(super) fn encode(
    salt: &Salt,
    tag: u8,
    payload: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    let salt = (tag != HEADER).then_some(salt);
    scratch.clear();
    scratch.push(tag);
    scratch.extend_from_slice(payload);
    scratch.extend_from_slice(&check(salt, tag, payload).to_le_bytes());
    let start = out.len();
    out.resize(start + encoded_len(payload.len()), 0);
    // The buffer was sized for the worst case, so the encoding fits.
    let written = stream::encode(scratch, &mut out[start..]).map_or(0, <[u8]>::len);
    out.truncate(start + written);
}

/// The header record of a file with `salt`.
pub(super) fn header(salt: &Salt) -> Vec<u8> {
    let mut payload = MAGIC.to_vec();
    payload.extend_from_slice(salt);
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    encode(salt, HEADER, &payload, &mut scratch, &mut out);
    out
}

/// A record as read back.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record<'a> {
    /// The file's header, with its salt.
    Header(Salt),
    /// A message.
    Message(&'a [u8]),
    /// The oldest pending message was delivered.
    Delivered,
}

/// Decodes one record, `encoded` without its delimiter (decoded in place), checked under
/// `salt` (`None` before the header is read); `None` if it is damaged.
pub(super) fn decode<'a>(encoded: &'a mut [u8], salt: Option<&Salt>) -> Option<Record<'a>> {
    let len = stream::decode_in_place(encoded).ok()?;
    let record = &encoded[..len];
    let (body, sum) = record.split_at_checked(len.checked_sub(CHECK)?)?;
    let (&tag, payload) = body.split_first()?;
    let salted = if tag == HEADER { None } else { Some(salt?) };
    if check(salted, tag, payload).to_le_bytes() != sum {
        return None;
    }
    match tag {
        HEADER => {
            let salt = payload.strip_prefix(MAGIC)?;
            Some(Record::Header(salt.try_into().ok()?))
        }
        MESSAGE => Some(Record::Message(payload)),
        DELIVERED if payload.is_empty() => Some(Record::Delivered),
        _ => None,
    }
}

/// The longest encoding a damaged record may have and still be taken for a delivery record
/// (whose loss only delivers a message again); a longer one held a message.
pub(super) const DELIVERED_ENCODED: usize = 1 + 1 + CHECK + 1;

/// Whether a file starting with `first` is of version 1.
pub(super) fn is_version_1(first: u8) -> bool {
    first == MESSAGE || first == DELIVERED
}

/// A version-1 message record's header: tag, length, unsalted FNV-1a 64.
pub(super) const V1_MESSAGE_HEADER: usize = 1 + 4 + 8;

/// A version-1 message header's length and check, if `header` is one.
pub(super) fn v1_message(header: &[u8; V1_MESSAGE_HEADER]) -> Option<(usize, u64)> {
    if header[0] != MESSAGE {
        return None;
    }
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&header[5..]);
    Some((len, u64::from_le_bytes(sum)))
}

/// Whether a version-1 payload matches its check.
pub(super) fn v1_checks(payload: &[u8], sum: u64) -> bool {
    fnv1a64(payload) == sum
}

/// The delimiter that ends every record.
pub(super) const END: u8 = DELIMITER;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;

    fn record(salt: &Salt, tag: u8, payload: &[u8]) -> Vec<u8> {
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        encode(salt, tag, payload, &mut scratch, &mut out);
        out
    }

    #[test]
    fn records_hold_no_zero_but_their_delimiter_and_read_back() {
        let salt = [0, 1, 2, 3, 0, 0, 9, 0];
        let payload = [0u8, 0, 7, 0, 255, 0];
        let mut bytes = record(&salt, MESSAGE, &payload);
        assert_eq!(bytes.len(), encoded_len(payload.len()));
        assert_eq!(bytes.pop(), Some(END));
        assert!(!bytes.contains(&0));
        assert_eq!(
            decode(&mut bytes, Some(&salt)),
            Some(Record::Message(&payload[..]))
        );
        let mut header = header(&salt);
        header.pop();
        assert_eq!(decode(&mut header, None), Some(Record::Header(salt)));
        let mut delivered = record(&salt, DELIVERED, &[]);
        assert_eq!(delivered.len(), DELIVERED_ENCODED);
        delivered.pop();
        assert_eq!(decode(&mut delivered, Some(&salt)), Some(Record::Delivered));
    }

    #[test]
    fn a_record_checked_under_another_salt_or_with_a_flipped_byte_is_damaged() {
        let salt = new_salt();
        let mut other = salt;
        other[0] ^= 1;
        let mut bytes = record(&salt, MESSAGE, b"payload");
        bytes.pop();
        assert_eq!(decode(&mut bytes.clone(), Some(&other)), None);
        assert_eq!(decode(&mut bytes.clone(), None), None);
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            if flipped[i] != 0 {
                assert_eq!(decode(&mut flipped, Some(&salt)), None, "byte {i}");
            }
        }
        assert!(!is_version_1(header(&salt)[0]));
    }
}
