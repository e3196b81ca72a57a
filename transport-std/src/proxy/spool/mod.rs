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

mod replay;

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use replay::{record_header, replay, DELIVERED, MESSAGE_HEADER};

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
            .mode(PRIVATE)
            .open(&path)
            .map_err(io("open"))?;
        // It holds every acknowledged payload: its owner's alone, whoever made it before.
        file.set_permissions(Permissions::from_mode(PRIVATE))
            .map_err(io("chmod 600"))?;
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
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE)
            .open(&aside)
            .map_err(io("create"))?;
        // A copy left by a crash keeps the mode it was made with: set it again.
        out.set_permissions(Permissions::from_mode(PRIVATE))
            .map_err(io("chmod 600"))?;
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

/// `path` with `.suffix` appended to its file name: `site.north` gives
/// `site.north.compacting`, never the `site.compacting` of `site.south` too.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// The mode of the spool and of every copy of it: they hold acknowledged payloads.
const PRIVATE: u32 = 0o600;

/// Writes `bytes` to the first free `<spool>.damaged.<n>`, so no damage overwrites the
/// evidence of an earlier one; returns its path.
fn save_aside(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    for n in 1u32.. {
        let aside = sibling(path, &format!("damaged.{n}"));
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE)
            .open(&aside);
        match created {
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
