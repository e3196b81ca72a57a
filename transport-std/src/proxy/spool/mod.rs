//! [`Spool`]: the buffered proxy's on-disk queue, so a restart or power cut loses nothing
//! that was acknowledged.
//!
//! One append-only file of records:
//!
//! | size | field |
//! |---|---|
//! | 1 | tag: `M` a message, `D` "the oldest message was delivered" |
//! | 4 | (`M` only) payload length, little-endian |
//! | 8 | (`M` only) FNV-1a 64 of the payload, little-endian |
//! | n | (`M` only) the payload: the frame as received |
//!
//! A message record is `fsync`ed before the proxy acknowledges it. Delivery records are not
//! synced (losing one only means a message is delivered again: delivery is at-least-once).
//! On open, records are replayed to rebuild the pending messages in order. A torn record at
//! the end (a crash mid-append, never acknowledged) is cut off. Each message record carries
//! its own checksum, so damage elsewhere costs only the records it touches: they are skipped,
//! the intact ones around them kept, and the acknowledged messages lost are logged and
//! reported by [`Spool::lost_on_open`]. Whatever the damage, the file as found is first kept
//! beside the spool as `<name>.damaged.<n>` (a new `n` each time, so no later damage
//! overwrites the evidence) and the spool rewritten with its whole records only. Every file
//! a spool makes beside itself keeps its full name (`site.north.compacting`), so two spools
//! in one folder never share one. A failed write or sync takes the
//! record back out before the error is reported. When nothing is pending the file is
//! truncated; when delivered records take more than half the file it is rewritten with the
//! pending messages only (written aside, synced, renamed over, directory synced).
//!
//! The spool does not keep payloads in memory: [`Spool::append`] and [`Spool::delivered`]
//! take the pending messages (oldest first, the ones the spool holds, without the new one)
//! for compaction. Passing anything else loses data; [`BufferedProxy`](crate::BufferedProxy)
//! passes its queue.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use zmqrpc_core::key::fnv1a64;

const MESSAGE: u8 = b'M';
const DELIVERED: u8 = b'D';
const MESSAGE_HEADER: u64 = 1 + 4 + 8;

/// Why the spool failed.
#[derive(Debug)]
pub enum SpoolError {
    /// Appending would make the file larger than its bound.
    Full {
        /// The bound in bytes.
        max_bytes: u64,
    },
    /// The file system failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The spool file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Full { max_bytes } => write!(f, "spool full ({max_bytes} bytes)"),
            SpoolError::Io { op, path, source } => {
                write!(f, "spool {}: {op} failed: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Io { source, .. } => Some(source),
            SpoolError::Full { .. } => None,
        }
    }
}

/// An append-only, crash-safe message file.
#[derive(Debug)]
pub struct Spool {
    file: File,
    path: PathBuf,
    max_bytes: u64,
    /// Bytes in the file.
    len: u64,
    /// Bytes of message records already delivered (reclaimable by compaction).
    dead: u64,
    /// Pending message records, oldest first: their sizes on disk.
    pending: std::collections::VecDeque<u64>,
    /// Acknowledged messages found damaged when the spool was opened.
    lost: u64,
}

impl Spool {
    /// Opens (or creates) the spool at `path`, at most `max_bytes` large; returns it with the
    /// messages still to deliver, oldest first.
    pub fn open(
        path: impl AsRef<Path>,
        max_bytes: u64,
    ) -> Result<(Spool, Vec<Vec<u8>>), SpoolError> {
        let path = path.as_ref().to_path_buf();
        let named = path.clone();
        let io = |op| {
            let path = named.clone();
            move |source| SpoolError::Io { op, path, source }
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open"))?;
        if !existed {
            // A new file's name must survive a power cut as well as its contents.
            sync_parent(&path).map_err(io("fsync directory"))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;

        let replayed = replay(&bytes);
        let damaged = replayed.whole < bytes.len() || replayed.skipped > 0;
        if damaged {
            // Keep the bytes as found, under a name no other spool and no earlier damage
            // uses, before anything is cut or rewritten.
            let aside = save_aside(&path, &bytes).map_err(io("save damaged copy"))?;
            if replayed.lost > 0 || replayed.skipped > 0 {
                log::error!(
                    "spool {}: {} damaged record(s) skipped, {} acknowledged message(s) lost; \
                     copy kept in {}",
                    path.display(),
                    replayed.skipped,
                    replayed.lost,
                    aside.display()
                );
            } else {
                log::warn!(
                    "spool {}: cut a torn record of {} bytes at the end (copy kept in {})",
                    path.display(),
                    bytes.len() - replayed.whole,
                    aside.display()
                );
            }
        }
        let messages = replayed.pending;
        let mut spool = Spool {
            file,
            path,
            max_bytes,
            len: replayed.whole as u64,
            dead: 0,
            pending: messages
                .iter()
                .map(|m| MESSAGE_HEADER + m.len() as u64)
                .collect(),
            lost: replayed.lost,
        };
        spool.dead = spool.len.saturating_sub(spool.pending.iter().sum::<u64>());
        if damaged {
            // Only whole, checked records remain, in a file rewritten aside and renamed.
            spool.compact(messages.iter().copied())?;
        }
        spool.file.seek(SeekFrom::End(0)).map_err(io("seek"))?;
        let payloads = messages.into_iter().map(<[u8]>::to_vec).collect();
        Ok((spool, payloads))
    }

    /// Acknowledged messages found damaged beyond use when the spool was opened (their
    /// records failed their checksum); the intact records around them were kept.
    pub fn lost_on_open(&self) -> u64 {
        self.lost
    }

    /// Appends `message` and syncs it to disk; once this returns, the message survives a
    /// crash. `pending` must be the messages already pending, oldest first, for compaction.
    pub fn append<'a>(
        &mut self,
        message: &[u8],
        pending: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), SpoolError> {
        let size = MESSAGE_HEADER + message.len() as u64;
        if self.len + size > self.max_bytes && self.dead > 0 {
            self.compact(pending)?;
        }
        if self.len + size > self.max_bytes {
            return Err(SpoolError::Full {
                max_bytes: self.max_bytes,
            });
        }
        let len = u32::try_from(message.len()).map_err(|_| SpoolError::Full {
            max_bytes: self.max_bytes,
        })?;
        let start = self.len;
        self.write(&[&record_header(len, message), message])?;
        if let Err(e) = self.file.sync_data() {
            // Not durable, so not acknowledged: take the record back out.
            self.rewind(start);
            return Err(self.io("fsync", e));
        }
        self.pending.push_back(size);
        Ok(())
    }

    /// Records that the oldest pending message was delivered.
    pub fn delivered<'a>(
        &mut self,
        pending: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), SpoolError> {
        let Some(size) = self.pending.pop_front() else {
            return Ok(());
        };
        self.dead += size;
        if self.pending.is_empty() {
            // Nothing left to keep: start the file afresh.
            self.file.set_len(0).map_err(|e| self.io("truncate", e))?;
            self.file
                .seek(SeekFrom::Start(0))
                .map_err(|e| self.io("seek", e))?;
            self.file.sync_data().map_err(|e| self.io("fsync", e))?;
            self.len = 0;
            self.dead = 0;
            return Ok(());
        }
        self.write(&[&[DELIVERED]])?;
        self.dead += 1;
        if self.dead > self.len / 2 {
            self.compact(pending)?;
        }
        Ok(())
    }

    /// Bytes in the file now.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Messages pending in the file.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Flushes everything to disk (delivery records included).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.file.sync_all().map_err(|e| self.io("fsync", e))
    }

    /// Rewrites the file with the pending messages only.
    fn compact<'a>(&mut self, pending: impl Iterator<Item = &'a [u8]>) -> Result<(), SpoolError> {
        let aside = sibling(&self.path, "compacting");
        let io = |op| {
            let path = aside.clone();
            move |source| SpoolError::Io { op, path, source }
        };
        let mut out = File::create(&aside).map_err(io("create"))?;
        let mut len = 0;
        let mut sizes = std::collections::VecDeque::with_capacity(self.pending.len());
        for message in pending {
            // Pending messages were appended before, so their length fits a u32.
            let header = record_header(message.len() as u32, message);
            out.write_all(&header).map_err(io("write"))?;
            out.write_all(message).map_err(io("write"))?;
            let size = MESSAGE_HEADER + message.len() as u64;
            len += size;
            sizes.push_back(size);
        }
        out.sync_all().map_err(io("fsync"))?;
        std::fs::rename(&aside, &self.path).map_err(io("rename"))?;
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable.
            if let Ok(dir) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                let _ = dir.sync_all();
            }
        }
        out.seek(SeekFrom::End(0)).map_err(io("seek"))?;
        self.file = out;
        self.len = len;
        self.dead = 0;
        self.pending = sizes;
        Ok(())
    }

    /// Appends one record made of `parts`; on failure the file is cut back to where the
    /// record began, so no half record can hide the ones appended after it.
    fn write(&mut self, parts: &[&[u8]]) -> Result<(), SpoolError> {
        let start = self.len;
        let mut result = Ok(());
        for part in parts {
            result = self.file.write_all(part);
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(()) => {
                self.len = start + parts.iter().map(|p| p.len() as u64).sum::<u64>();
                Ok(())
            }
            Err(e) => {
                self.rewind(start);
                Err(self.io("write", e))
            }
        }
    }

    /// Cuts the file back to `len` bytes (after a failed write or sync).
    fn rewind(&mut self, len: u64) {
        let _ = self.file.set_len(len);
        let _ = self.file.seek(SeekFrom::Start(len));
        self.len = len;
    }

    fn io(&self, op: &'static str, source: io::Error) -> SpoolError {
        SpoolError::Io {
            op,
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = self.file.sync_all();
    }
}

/// Syncs the directory holding `path`, so a new or renamed entry in it is durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The header of a message record.
fn record_header(len: u32, message: &[u8]) -> [u8; MESSAGE_HEADER as usize] {
    let mut header = [0u8; MESSAGE_HEADER as usize];
    header[0] = MESSAGE;
    header[1..5].copy_from_slice(&len.to_le_bytes());
    header[5..13].copy_from_slice(&fnv1a64(message).to_le_bytes());
    header
}

/// `path` with `.suffix` appended to its file name: `site.north` gives
/// `site.north.compacting`, never the `site.compacting` of `site.south` too.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `bytes` to the first free `<spool>.damaged.<n>`, so no damage overwrites the
/// evidence of an earlier one; returns its path.
fn save_aside(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    for n in 1u32.. {
        let aside = sibling(path, &format!("damaged.{n}"));
        match OpenOptions::new().write(true).create_new(true).open(&aside) {
            Ok(mut file) => {
                file.write_all(bytes)?;
                file.sync_all()?;
                return Ok(aside);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free name for the damaged copy"))
}

/// What replaying a spool file found.
struct Replayed<'a> {
    /// The messages still to deliver, oldest first.
    pending: Vec<&'a [u8]>,
    /// Bytes up to the end of the last whole record (a torn record after it is cut).
    whole: usize,
    /// Damaged records skipped (or stretches of bytes that were no record).
    skipped: u64,
    /// Of those, acknowledged messages still pending: lost.
    lost: u64,
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
fn replay(bytes: &[u8]) -> Replayed<'_> {
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
