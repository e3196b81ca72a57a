//! Replaying a spool file into the messages still to deliver: one pass over the file, read
//! in pieces, each byte looked at once, in memory bounded by the spool's size.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

use super::record::{self, Record, Salt};

/// What replaying a spool file found.
#[derive(Debug, Default)]
pub(super) struct Replayed {
    /// The messages still to deliver, oldest first.
    pub(super) pending: Vec<Vec<u8>>,
    /// The file's salt, if its header was read.
    pub(super) salt: Option<Salt>,
    /// The format version found: 0 for an empty file.
    pub(super) version: u8,
    /// Bytes up to the end of the last whole record; what follows is a torn append.
    pub(super) whole: u64,
    /// Damaged records skipped.
    pub(super) skipped: u64,
    /// Acknowledged messages still pending that could not be recovered: damaged, or
    /// beyond what the spool may hold in memory.
    pub(super) lost: u64,
    /// Of those, messages beyond the memory bound.
    pub(super) over_budget: u64,
    /// Bytes after the first damage of a version-1 file, which cannot be read: how many
    /// messages they held is unknown (counted as one lost).
    pub(super) unread: u64,
}

impl Replayed {
    /// Whether records were damaged (rather than only a torn append at the end).
    pub(super) fn damaged(&self) -> bool {
        self.skipped > 0 || self.lost > 0
    }
}

/// The pending messages as replay builds them, in at most `budget` bytes: past it the oldest
/// are let go (and counted), and the delivery records after them pop those first, since
/// deliveries always take the oldest.
struct Pending {
    queue: VecDeque<Option<Vec<u8>>>,
    /// Bytes held, each entry costing its payload and [`ENTRY_COST`].
    bytes: u64,
    budget: u64,
    /// Entries let go from the front and not yet popped by a delivery.
    let_go: u64,
}

/// What an entry costs beyond its payload, so a file of empty or damaged records is bounded
/// as well.
const ENTRY_COST: u64 = 32;

impl Pending {
    fn new(budget: u64) -> Pending {
        Pending {
            queue: VecDeque::new(),
            bytes: 0,
            budget,
            let_go: 0,
        }
    }

    fn cost(entry: &Option<Vec<u8>>) -> u64 {
        ENTRY_COST + entry.as_ref().map_or(0, |m| m.len() as u64)
    }

    /// A message (`None`: one that was damaged).
    fn push(&mut self, entry: Option<Vec<u8>>) {
        self.bytes += Pending::cost(&entry);
        self.queue.push_back(entry);
        while self.bytes > self.budget {
            let Some(oldest) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= Pending::cost(&oldest);
            self.let_go += 1;
        }
    }

    /// The oldest message was delivered.
    fn pop(&mut self) {
        if self.let_go > 0 {
            self.let_go -= 1;
        } else if let Some(oldest) = self.queue.pop_front() {
            self.bytes -= Pending::cost(&oldest);
        }
    }

    /// The messages recovered, and how many were lost (damaged, or let go).
    fn finish(self, replayed: &mut Replayed) {
        let damaged = self.queue.iter().filter(|m| m.is_none()).count() as u64;
        replayed.lost = damaged + self.let_go;
        replayed.over_budget = self.let_go;
        replayed.pending = self.queue.into_iter().flatten().collect();
    }
}

/// Replays the spool file read from `file`, holding at most about `budget` bytes of pending
/// messages (a spool's bound: a file it wrote never holds more).
/// `file_len` is the file's length.
pub(super) fn replay(file: impl Read, file_len: u64, budget: u64) -> io::Result<Replayed> {
    let mut reader = io::BufReader::with_capacity(64 << 10, file);
    let mut replayed = Replayed::default();
    let Some(&first) = reader.fill_buf()?.first() else {
        return Ok(replayed);
    };
    let mut pending = Pending::new(budget);
    if record::is_version_1(first) {
        replayed.version = 1;
        replay_v1(&mut reader, file_len, budget, &mut pending, &mut replayed)?;
    } else {
        replayed.version = 2;
        replay_v2(&mut reader, budget, &mut pending, &mut replayed)?;
    }
    pending.finish(&mut replayed);
    Ok(replayed)
}

/// Version 2: records ended by a zero. A damaged record costs only itself; the reader is
/// back in step at the next zero.
fn replay_v2(
    reader: &mut impl BufRead,
    budget: u64,
    pending: &mut Pending,
    replayed: &mut Replayed,
) -> io::Result<()> {
    // The longest record a spool of this size can hold, encoded; a longer run of bytes
    // without a zero is damage, dropped as it is read rather than held.
    let longest = record::encoded_len(usize::try_from(budget).unwrap_or(usize::MAX));
    let mut frame = Vec::new();
    // Bytes of the record being read, including any dropped.
    let mut frame_len = 0usize;
    let mut at = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let (used, ended) = match chunk.iter().position(|&b| b == record::END) {
            Some(end) => (end + 1, Some(end)),
            None => (chunk.len(), None),
        };
        let body = &chunk[..ended.unwrap_or(used)];
        frame_len += body.len();
        if frame_len <= longest {
            frame.extend_from_slice(body);
        } else {
            frame.clear();
        }
        reader.consume(used);
        at += used as u64;
        if ended.is_some() {
            if frame_len > 0 {
                take(&mut frame, frame_len, longest, pending, replayed);
                replayed.whole = at;
            }
            frame.clear();
            frame_len = 0;
        }
    }
    Ok(())
}

/// Takes one record of `frame_len` bytes (`frame` holds them unless there were more than
/// `longest`).
fn take(
    frame: &mut [u8],
    frame_len: usize,
    longest: usize,
    pending: &mut Pending,
    replayed: &mut Replayed,
) {
    let record = match frame_len <= longest {
        true => record::decode(frame, replayed.salt.as_ref()),
        false => None,
    };
    match record {
        Some(Record::Header(salt)) if replayed.salt.is_none() => replayed.salt = Some(salt),
        Some(Record::Message(message)) => pending.push(Some(message.to_vec())),
        Some(Record::Delivered) => pending.pop(),
        // A second header: nothing to replay in it.
        Some(Record::Header(_)) => replayed.skipped += 1,
        None => {
            replayed.skipped += 1;
            // A record longer than a delivery held a message; a damaged delivery record only
            // means its message is delivered again.
            if frame_len + 1 > record::DELIVERED_ENCODED {
                pending.push(None);
            }
        }
    }
}

/// Version 1: records of a tag, a length and a check, in a row. Read up to the first damage;
/// what follows it cannot be told from payload bytes without trying every offset, so it is
/// counted as one damaged record (its message lost, the file kept aside).
fn replay_v1(
    reader: &mut impl BufRead,
    file_len: u64,
    budget: u64,
    pending: &mut Pending,
    replayed: &mut Replayed,
) -> io::Result<()> {
    let mut header = [0u8; record::V1_MESSAGE_HEADER];
    loop {
        if !read_fully(reader, &mut header[..1])? {
            return Ok(());
        }
        if header[0] == record::DELIVERED {
            pending.pop();
            replayed.whole += 1;
            continue;
        }
        if !read_fully(reader, &mut header[1..])? {
            return Ok(()); // torn at the end: never acknowledged
        }
        let message = record::v1_message(&header).filter(|(len, _)| *len as u64 <= budget);
        let Some((len, sum)) = message else {
            break;
        };
        let mut payload = vec![0u8; len];
        if !read_fully(reader, &mut payload)? {
            return Ok(());
        }
        if !record::v1_checks(&payload, sum) {
            break;
        }
        pending.push(Some(payload));
        replayed.whole += (record::V1_MESSAGE_HEADER + len) as u64;
    }
    replayed.skipped += 1;
    pending.push(None);
    replayed.unread = file_len.saturating_sub(replayed.whole);
    Ok(())
}

/// Reads `buf` whole; `false` if the file ends first.
fn read_fully(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;
    use crate::proxy::spool::record::{encode, header, DELIVERED, MESSAGE};

    const SALT: Salt = [7, 0, 5, 0, 3, 0, 1, 0];

    /// A version-2 file: `Some` records for messages, `None` for deliveries.
    fn file(records: &[Option<&[u8]>]) -> Vec<u8> {
        let mut bytes = header(&SALT);
        let mut scratch = Vec::new();
        for record in records {
            match record {
                Some(message) => encode(&SALT, MESSAGE, message, &mut scratch, &mut bytes),
                None => encode(&SALT, DELIVERED, &[], &mut scratch, &mut bytes),
            }
        }
        bytes
    }

    fn read(bytes: &[u8]) -> Replayed {
        replay(bytes, bytes.len() as u64, 1 << 20).unwrap()
    }

    #[test]
    fn deliveries_pop_the_oldest_messages_in_order() {
        let bytes = file(&[Some(b"one"), Some(b"two"), None, Some(b"three")]);
        let replayed = read(&bytes);
        assert_eq!(replayed.pending, [&b"two"[..], b"three"]);
        assert_eq!(replayed.salt, Some(SALT));
        assert_eq!(
            (replayed.whole, replayed.skipped, replayed.lost),
            (bytes.len() as u64, 0, 0)
        );
        assert!(read(&[]).pending.is_empty());
    }

    #[test]
    fn a_torn_last_record_is_cut_and_not_counted() {
        let whole = file(&[Some(b"one"), Some(b"two")]);
        let mut bytes = whole.clone();
        let next = file(&[Some(b"torn off")]);
        bytes.extend_from_slice(&next[header(&SALT).len()..][..5]);
        let replayed = read(&bytes);
        assert_eq!(replayed.pending, [&b"one"[..], b"two"]);
        assert_eq!(
            (replayed.whole, replayed.skipped, replayed.lost),
            (whole.len() as u64, 0, 0)
        );
        assert!(!replayed.damaged());
    }

    #[test]
    fn a_damaged_record_costs_only_its_own_message_and_keeps_its_place() {
        let mut bytes = file(&[Some(b"one"), Some(b"two"), Some(b"three"), None]);
        let two = bytes.windows(3).position(|w| w == b"two").unwrap();
        bytes[two] ^= 0x40;
        let replayed = read(&bytes);
        // The delivery record popped "one"; "two" is lost, "three" kept.
        assert_eq!(replayed.pending, [&b"three"[..]]);
        assert_eq!((replayed.skipped, replayed.lost), (1, 1));
        assert_eq!(replayed.whole, bytes.len() as u64);
    }

    #[test]
    fn a_record_hidden_in_a_payload_is_never_adopted() {
        // A payload that is itself a whole record of the file (were the salt known) and
        // the record of a version-1 file: whatever the damage before it, it stays payload.
        let mut inner = Vec::new();
        encode(&SALT, MESSAGE, b"forged", &mut Vec::new(), &mut inner);
        let mut payload = b"xx".to_vec();
        payload.extend_from_slice(&inner);
        payload.extend_from_slice(b"M\x06\0\0\0");
        let mut bytes = file(&[Some(b"one"), Some(&payload), Some(b"three")]);
        // Damage the carrying record's first byte.
        let at = header(&SALT).len() + record::encoded_len(3);
        bytes[at] ^= 0x01;
        let replayed = read(&bytes);
        assert_eq!(replayed.pending, [&b"one"[..], b"three"]);
        assert_eq!((replayed.skipped, replayed.lost), (1, 1));
    }

    #[test]
    fn a_long_run_without_a_zero_is_dropped_as_it_is_read() {
        let mut bytes = file(&[Some(b"one")]);
        bytes.extend(std::iter::repeat_n(0x55, 3 << 20));
        bytes.push(0);
        bytes.extend_from_slice(&file(&[Some(b"two")])[header(&SALT).len()..]);
        let replayed = replay(&bytes[..], bytes.len() as u64, 1 << 20).unwrap();
        assert_eq!(replayed.pending, [&b"one"[..], b"two"]);
        assert_eq!((replayed.skipped, replayed.lost), (1, 1));
    }

    #[test]
    fn pending_messages_beyond_the_budget_are_let_go_oldest_first_and_counted() {
        let messages: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
        let mut records: Vec<Option<&[u8]>> = messages.iter().map(|m| Some(&m[..])).collect();
        // Two delivered: they pop the oldest, let go or not.
        records.extend([None, None]);
        let bytes = file(&records);
        // Room for about four.
        let replayed = replay(&bytes[..], bytes.len() as u64, 4 * (100 + ENTRY_COST)).unwrap();
        assert_eq!(replayed.pending, messages[6..]);
        assert_eq!((replayed.lost, replayed.over_budget), (4, 4));
        let all = replay(&bytes[..], bytes.len() as u64, 1 << 20).unwrap();
        assert_eq!(all.pending, messages[2..]);
    }

    #[test]
    fn a_version_1_file_is_read_up_to_its_first_damage() {
        fn v1(records: &[Option<&[u8]>]) -> Vec<u8> {
            let mut bytes = Vec::new();
            for record in records {
                match record {
                    Some(m) => {
                        bytes.push(MESSAGE);
                        bytes.extend_from_slice(&(m.len() as u32).to_le_bytes());
                        let sum = zmqrpc_core::key::fnv1a64(m);
                        bytes.extend_from_slice(&sum.to_le_bytes());
                        bytes.extend_from_slice(m);
                    }
                    None => bytes.push(DELIVERED),
                }
            }
            bytes
        }
        let bytes = v1(&[Some(b"one"), Some(b"two"), None, Some(b"three")]);
        let replayed = read(&bytes);
        assert_eq!(replayed.version, 1);
        assert_eq!(replayed.pending, [&b"two"[..], b"three"]);
        assert!(!replayed.damaged());
        let mut damaged = bytes.clone();
        let three = damaged.windows(5).position(|w| w == b"three").unwrap();
        damaged[three] ^= 0xff;
        let replayed = read(&damaged);
        assert_eq!(replayed.pending, [&b"two"[..]]);
        assert_eq!((replayed.skipped, replayed.lost), (1, 1));
        assert_eq!(replayed.unread, (damaged.len() - three + 13) as u64);
        let torn = read(&bytes[..bytes.len() - 2]);
        assert_eq!(torn.pending, [&b"two"[..]]);
        assert!(!torn.damaged());
    }
}
