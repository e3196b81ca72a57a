//! The spool file's records: their format, and replaying them into the pending messages.
//! Pure functions on bytes, so every kind of damage can be tested without a file.

use std::collections::VecDeque;

use zmqrpc_core::key::fnv1a64;

/// A message record's tag.
pub(super) const MESSAGE: u8 = b'M';
/// A delivery record: the oldest pending message was delivered.
pub(super) const DELIVERED: u8 = b'D';
/// The bytes before a message record's payload: tag, length, checksum.
pub(super) const MESSAGE_HEADER: u64 = 1 + 4 + 8;

/// The header of a message record.
pub(super) fn record_header(len: u32, message: &[u8]) -> [u8; MESSAGE_HEADER as usize] {
    let mut header = [0u8; MESSAGE_HEADER as usize];
    header[0] = MESSAGE;
    header[1..5].copy_from_slice(&len.to_le_bytes());
    header[5..13].copy_from_slice(&fnv1a64(message).to_le_bytes());
    header
}

/// What replaying a spool file found.
pub(super) struct Replayed<'a> {
    /// The messages still to deliver, oldest first.
    pub(super) pending: Vec<&'a [u8]>,
    /// Bytes up to the end of the last whole record (a torn record after it is cut).
    pub(super) whole: usize,
    /// Damaged records skipped (or stretches of bytes that were no record).
    pub(super) skipped: u64,
    /// Of those, acknowledged messages still pending: lost.
    pub(super) lost: u64,
}

/// Where the message record at `at` ends, if one starts there whole with a good checksum;
/// `Err(Some(end))` if its header is whole and fits the file but the checksum fails;
/// `Err(None)` if no whole record starts there.
fn message_at(bytes: &[u8], at: usize) -> Result<usize, Option<usize>> {
    let header = bytes
        .get(at..at + MESSAGE_HEADER as usize)
        .filter(|h| h[0] == MESSAGE)
        .ok_or(None)?;
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let sum = u64::from_le_bytes([
        header[5], header[6], header[7], header[8], header[9], header[10], header[11], header[12],
    ]);
    let start = at + MESSAGE_HEADER as usize;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= bytes.len())
        .ok_or(None)?;
    if fnv1a64(&bytes[start..end]) == sum {
        Ok(end)
    } else {
        Err(Some(end))
    }
}

/// Whether a whole record (or the end of the file) starts at `at`.
fn record_starts(bytes: &[u8], at: usize) -> bool {
    at == bytes.len() || bytes[at] == DELIVERED || message_at(bytes, at).is_ok()
}

/// Replays records into the pending messages.
///
/// Each message record carries its own checksum, so damage costs only the records it
/// touches. A record whose checksum fails but whose length leads to the next record is
/// skipped alone; where the bytes are no record at all, the next message record with a good
/// checksum is searched for. Either way the damaged message keeps its place in the queue
/// (delivery records after it still pop the right messages) and counts as lost if still
/// pending at the end. A record that runs past the end of the file, or damage after the
/// last whole record, is a torn append (never acknowledged): cut off, not counted.
pub(super) fn replay(bytes: &[u8]) -> Replayed<'_> {
    let mut pending: VecDeque<Option<&[u8]>> = VecDeque::new();
    let mut at = 0;
    let mut whole = 0;
    let mut skipped = 0;
    while at < bytes.len() {
        if bytes[at] == DELIVERED {
            pending.pop_front();
            at += 1;
            whole = at;
            continue;
        }
        match message_at(bytes, at) {
            Ok(end) => {
                let start = at + MESSAGE_HEADER as usize;
                pending.push_back(Some(&bytes[start..end]));
                at = end;
                whole = at;
                continue;
            }
            Err(Some(end)) if end < bytes.len() && record_starts(bytes, end) => {
                // The length leads to the next record: only this payload is damaged.
                pending.push_back(None);
                skipped += 1;
                at = end;
                whole = at;
                continue;
            }
            Err(_) => {}
        }
        // No record here: find the next whole message record.
        match (at + 1..bytes.len()).find(|&next| message_at(bytes, next).is_ok()) {
            Some(next) => {
                // A stretch the size of a record header or more held a message (a damaged
                // delivery record is one byte: skipping it only delivers a message again).
                if bytes[at] == MESSAGE || next - at >= MESSAGE_HEADER as usize {
                    pending.push_back(None);
                }
                skipped += 1;
                at = next;
            }
            None => break,
        }
    }
    let lost = pending.iter().filter(|m| m.is_none()).count() as u64;
    Replayed {
        pending: pending.into_iter().flatten().collect(),
        whole,
        skipped,
        lost,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;

    /// A spool file's bytes: `M` records for messages, `D` for deliveries.
    fn file(records: &[Option<&[u8]>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for record in records {
            match record {
                Some(message) => {
                    let len = u32::try_from(message.len()).unwrap();
                    bytes.extend_from_slice(&record_header(len, message));
                    bytes.extend_from_slice(message);
                }
                None => bytes.push(DELIVERED),
            }
        }
        bytes
    }

    #[test]
    fn deliveries_pop_the_oldest_messages_in_order() {
        let bytes = file(&[Some(b"one"), Some(b"two"), None, Some(b"three")]);
        let replayed = replay(&bytes);
        assert_eq!(replayed.pending, [&b"two"[..], b"three"]);
        assert_eq!(
            (replayed.whole, replayed.skipped, replayed.lost),
            (bytes.len(), 0, 0)
        );
        assert!(replay(&[]).pending.is_empty());
    }

    #[test]
    fn a_torn_last_record_is_cut_and_not_counted() {
        let whole = file(&[Some(b"one"), Some(b"two")]);
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&file(&[Some(b"torn off")])[..9]);
        let replayed = replay(&bytes);
        assert_eq!(replayed.pending, [&b"one"[..], b"two"]);
        assert_eq!(
            (replayed.whole, replayed.skipped, replayed.lost),
            (whole.len(), 0, 0)
        );
    }

    #[test]
    fn a_damaged_payload_costs_only_its_own_message_and_keeps_its_place() {
        let mut bytes = file(&[Some(b"one"), Some(b"two"), Some(b"three"), None]);
        // Flip a byte of "two"'s payload: its checksum fails, its length still leads on.
        let two = bytes.windows(3).position(|w| w == b"two").unwrap();
        bytes[two] ^= 0xff;
        let replayed = replay(&bytes);
        // The delivery record popped "one"; "two" is lost, "three" kept.
        assert_eq!(replayed.pending, [&b"three"[..]]);
        assert_eq!((replayed.skipped, replayed.lost), (1, 1));
        assert_eq!(replayed.whole, bytes.len());
    }

    #[test]
    fn garbage_between_records_is_skipped_to_the_next_whole_message() {
        let mut bytes = file(&[Some(b"one")]);
        bytes.extend_from_slice(&[0x55; 40]);
        bytes.extend_from_slice(&file(&[Some(b"two")]));
        let replayed = replay(&bytes);
        // A stretch of 40 bytes could have held a message: counted as one lost.
        assert_eq!(replayed.pending, [&b"one"[..], b"two"]);
        assert_eq!((replayed.skipped, replayed.lost), (1, 1));
    }
}
