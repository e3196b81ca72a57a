//! [`Spool`]: the buffered proxy's on-disk queue, so a restart or power cut loses nothing
//! that was acknowledged.
//!
//! One append-only file of records (`record.rs` has the format): a header with the file's
//! salt, then message records and delivery records ("the oldest message was delivered"),
//! each checked and each ended by a zero byte that occurs nowhere else. A message record is
//! `fsync`ed before the proxy acknowledges it. Delivery records are not synced (losing one
//! only means a message is delivered again: delivery is at-least-once).
//!
//! **One owner.** The spool is locked (`flock`, on `<name>.lock` beside it, which holds the
//! owner's process id) for as long as it is open: a second proxy on the same path, in this
//! process or another, fails with [`SpoolError::Locked`] naming the holder, before it reads
//! or writes anything.
//!
//! **Recovery** on open is one pass over the file, read in pieces, in memory bounded by the
//! spool's size: at most `max_bytes` of pending messages are held (a spool never holds more;
//! a file that does, the oldest beyond it are counted as lost). A torn record at the end (a
//! crash mid-append, never acknowledged) is cut off. A damaged record costs only itself: the
//! reader is back in step at the next zero, each byte read once, and a payload cannot pass
//! for a record however it was crafted. Damaged messages that were still pending are lost,
//! counted ([`Spool::lost_on_open`], [`Recovery`]) and logged; the file as found is first
//! copied beside the spool as `<name>.damaged.<n>`, at most [`DAMAGED_COPIES`] of them
//! (the oldest removed) and each at most `max_bytes` (or 1 MiB) long, and the spool
//! rewritten with its whole records only. A file of the first format is read up to its
//! first damage and rewritten in the current one.
//!
//! Every file a spool makes beside itself keeps its full name (`site.north.compacting`), so
//! two spools in one folder never share one. A failed write or sync takes the record back
//! out before the error is reported. When nothing is pending the file is truncated; when
//! delivered records take more than half the file it is rewritten with the pending messages
//! only (written aside, synced, renamed over, directory synced).
//!
//! The spool does not keep payloads in memory: [`Spool::append`] and [`Spool::delivered`]
//! take the pending messages (oldest first, the ones the spool holds, without the new one)
//! for compaction. Passing anything else loses data; [`BufferedProxy`](crate::BufferedProxy)
//! passes its queue.

mod lock;
mod record;
mod replay;

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use record::{Salt, DELIVERED, DELIVERED_ENCODED, MESSAGE};
use replay::{replay, Replayed};

/// The most damaged copies kept beside a spool; the oldest goes first.
pub const DAMAGED_COPIES: usize = 3;

/// Why the spool failed.
#[derive(Debug)]
pub enum SpoolError {
    /// Appending would make the file larger than its bound.
    Full {
        /// The bound in bytes.
        max_bytes: u64,
    },
    /// Another spool has the file open: two proxies must not share one.
    Locked {
        /// The spool file.
        path: PathBuf,
        /// The holder's process id, as its lock file says.
        holder: Option<u32>,
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
            SpoolError::Locked { path, holder } => {
                write!(f, "spool {} is in use", path.display())?;
                match holder {
                    Some(pid) => write!(f, " by process {pid}")?,
                    None => f.write_str(" by another process")?,
                }
                f.write_str(" (one proxy per spool)")
            }
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
            SpoolError::Full { .. } | SpoolError::Locked { .. } => None,
        }
    }
}

/// What opening a spool found and did about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Messages recovered, to deliver.
    pub recovered: usize,
    /// Damaged records skipped.
    pub skipped: u64,
    /// Acknowledged messages that could not be recovered: damaged, or beyond `max_bytes`.
    pub lost: u64,
    /// Bytes of a torn append cut from the end (never acknowledged).
    pub torn_bytes: u64,
    /// Bytes after the first damage of a first-format file, which that format gives no
    /// way to read back safely: the messages in them are lost, how many is unknown (they
    /// count as one in `lost`).
    pub unread_bytes: u64,
    /// Where the file as found was copied, if it was damaged.
    pub damaged_copy: Option<PathBuf>,
    /// Older damaged copies removed to keep at most [`DAMAGED_COPIES`].
    pub copies_removed: Vec<PathBuf>,
    /// The format the file was rewritten from, if it was an older one.
    pub upgraded_from: Option<u8>,
}

/// An append-only, crash-safe message file.
#[derive(Debug)]
pub struct Spool {
    file: File,
    path: PathBuf,
    /// Held while the spool is open: the file's single owner.
    _lock: lock::Lock,
    salt: Salt,
    max_bytes: u64,
    /// Bytes in the file.
    len: u64,
    /// Bytes of records already delivered (reclaimable by compaction).
    dead: u64,
    /// Pending message records, oldest first: their sizes on disk.
    pending: std::collections::VecDeque<u64>,
    /// Records written since the last sync ([`stage`](Spool::stage)), after the pending
    /// ones: their sizes on disk, and where the first began.
    staged: Vec<u64>,
    staged_from: u64,
    recovery: Recovery,
    /// Reused to encode records.
    scratch: Vec<u8>,
    out: Vec<u8>,
}

impl Spool {
    /// Opens (or creates) the spool at `path`, at most `max_bytes` large; returns it with the
    /// messages still to deliver, oldest first. Fails with [`SpoolError::Locked`] if another
    /// spool has it open.
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
        let lock = lock::Lock::take(&path)?;
        let existed = path.exists();
        let file = open_private(&path).map_err(io("open"))?;
        // It holds every acknowledged payload: its owner's alone, whoever made it before.
        file.set_permissions(Permissions::from_mode(PRIVATE))
            .map_err(io("chmod 600"))?;
        if !existed {
            // A new file's name must survive a power cut as well as its contents.
            sync_parent(&path).map_err(io("fsync directory"))?;
        }
        let found = file.metadata().map_err(io("stat"))?.len();
        let mut replayed = replay(&file, found, max_bytes).map_err(io("read"))?;
        let mut recovery = Recovery {
            recovered: replayed.pending.len(),
            skipped: replayed.skipped,
            lost: replayed.lost,
            torn_bytes: (found - replayed.whole).saturating_sub(replayed.unread),
            unread_bytes: replayed.unread,
            upgraded_from: (replayed.version == 1).then_some(1),
            ..Recovery::default()
        };
        if replayed.damaged() {
            // Keep the bytes as found, under a name no other spool and no earlier damage
            // uses, before anything is cut or rewritten.
            let limit = max_bytes.max(1 << 20);
            let (aside, removed) =
                save_aside(&path, &file, limit).map_err(io("save damaged copy"))?;
            log_damage(&path, &replayed, &aside, found > limit);
            recovery.damaged_copy = Some(aside);
            recovery.copies_removed = removed;
        } else if recovery.torn_bytes > 0 {
            log::warn!(
                "spool {}: cut a torn record of {} bytes at the end",
                path.display(),
                recovery.torn_bytes
            );
        }
        let salt = replayed.salt.unwrap_or_else(record::new_salt);
        let messages = std::mem::take(&mut replayed.pending);
        let mut spool = Spool {
            file,
            path,
            _lock: lock,
            salt,
            max_bytes,
            len: replayed.whole,
            dead: 0,
            pending: messages
                .iter()
                .map(|m| record::encoded_len(m.len()) as u64)
                .collect(),
            recovery,
            staged: Vec::new(),
            staged_from: 0,
            scratch: Vec::new(),
            out: Vec::new(),
        };
        // Sizes of recovered records are their longest encodings: what compaction could
        // reclaim is an estimate until the next compaction makes it exact.
        let kept = spool.pending.iter().sum::<u64>() + spool.header_len();
        spool.dead = spool.len.saturating_sub(kept);
        if replayed.damaged() || replayed.version == 1 {
            // Only whole, checked records remain, in a file rewritten aside and renamed.
            spool.compact(messages.iter().map(Vec::as_slice))?;
        } else if spool.recovery.torn_bytes > 0 {
            spool.file.set_len(spool.len).map_err(io("truncate"))?;
            spool.file.sync_all().map_err(io("fsync"))?;
        }
        spool.file.seek(SeekFrom::End(0)).map_err(io("seek"))?;
        Ok((spool, messages))
    }

    /// What opening the spool found: messages recovered and lost, damage, copies kept.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Acknowledged messages found damaged beyond use when the spool was opened (their
    /// records failed their check, or there were more than `max_bytes` of them); the intact
    /// records around them were kept.
    pub fn lost_on_open(&self) -> u64 {
        self.recovery.lost
    }

    /// Appends `message` and syncs it to disk; once this returns, the message survives a
    /// crash. `pending` must be the messages already pending, oldest first, for compaction.
    pub fn append<'a>(
        &mut self,
        message: &[u8],
        pending: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), SpoolError> {
        self.stage(message, pending)?;
        self.commit()
    }

    /// Writes `message` without syncing it: it is pending only once [`commit`](Spool::commit)
    /// returns (many staged messages, one sync). `pending` must be the messages pending and
    /// staged, oldest first, for compaction (which syncs them all).
    pub fn stage<'a>(
        &mut self,
        message: &[u8],
        pending: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), SpoolError> {
        let size = record::encoded_len(message.len()) as u64;
        // An empty file gets its header first.
        let header = match self.len {
            0 => record::header(&self.salt),
            _ => Vec::new(),
        };
        let needed = size + header.len() as u64;
        if self.len + needed > self.max_bytes && self.dead > 0 {
            self.compact(pending)?;
        }
        if self.len + needed > self.max_bytes {
            return Err(SpoolError::Full {
                max_bytes: self.max_bytes,
            });
        }
        let start = self.len;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.extend_from_slice(&header);
        record::encode(&self.salt, MESSAGE, message, &mut self.scratch, &mut out);
        let written = self.write(&out);
        let size = (out.len() - header.len()) as u64;
        self.out = out;
        written?;
        if self.staged.is_empty() {
            self.staged_from = start;
        }
        self.staged.push(size);
        Ok(())
    }

    /// Syncs the staged messages to disk, which makes them pending: once this returns they
    /// survive a crash. On failure they are taken back out of the file, and none is pending.
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.sync_data() {
            // Not durable, so not acknowledged: take the records back out.
            self.rewind(self.staged_from);
            self.staged.clear();
            return Err(self.io("fsync", e));
        }
        self.pending.extend(self.staged.drain(..));
        Ok(())
    }

    /// Messages staged and not yet committed.
    pub fn staged(&self) -> usize {
        self.staged.len()
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
        if self.pending.is_empty() && self.staged.is_empty() {
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
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        record::encode(&self.salt, DELIVERED, &[], &mut self.scratch, &mut out);
        let written = self.write(&out);
        self.out = out;
        written?;
        self.dead += DELIVERED_ENCODED as u64;
        // Staged messages are not among `pending` here: compaction waits for their commit.
        if self.dead > self.len / 2 && self.staged.is_empty() {
            self.compact(pending)?;
        }
        Ok(())
    }

    /// Bytes of the header record.
    fn header_len(&self) -> u64 {
        record::header(&self.salt).len() as u64
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
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE)
            .open(&aside)
            .map_err(io("create"))?;
        // A copy left by a crash keeps the mode it was made with: set it again.
        out.set_permissions(Permissions::from_mode(PRIVATE))
            .map_err(io("chmod 600"))?;
        let mut writer = io::BufWriter::with_capacity(64 << 10, out);
        let mut len = 0;
        let mut sizes = std::collections::VecDeque::with_capacity(self.pending.len());
        let mut encoded = Vec::new();
        for message in pending {
            encoded.clear();
            if len == 0 {
                encoded = record::header(&self.salt);
            }
            record::encode(
                &self.salt,
                MESSAGE,
                message,
                &mut self.scratch,
                &mut encoded,
            );
            writer.write_all(&encoded).map_err(io("write"))?;
            let header = if len == 0 { self.header_len() } else { 0 };
            len += encoded.len() as u64;
            sizes.push_back(encoded.len() as u64 - header);
        }
        let mut out = writer
            .into_inner()
            .map_err(|e| io("write")(e.into_error()))?;
        out.sync_all().map_err(io("fsync"))?;
        std::fs::rename(&aside, &self.path).map_err(io("rename"))?;
        // Make the rename itself durable.
        let _ = sync_parent(&self.path);
        out.seek(SeekFrom::End(0)).map_err(io("seek"))?;
        self.file = out;
        self.dead = 0;
        self.len = len;
        // Staged messages were among `pending`: synced with the rest, now pending too.
        self.pending = sizes;
        self.staged.clear();
        Ok(())
    }

    /// Appends `bytes` (whole records); on failure the file is cut back to where they
    /// began, so no half record can hide the ones appended after it.
    fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        let start = self.len;
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.len = start + bytes.len() as u64;
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

/// Says what damage replay found, and where the file as found was kept.
fn log_damage(path: &Path, replayed: &Replayed, aside: &Path, cut_short: bool) {
    let kept = match cut_short {
        true => " (its first bytes: the file is larger than the copy limit)",
        false => "",
    };
    log::error!(
        "spool {}: {} damaged record(s) skipped, {} acknowledged message(s) lost{}; copy kept \
         in {}{kept}",
        path.display(),
        replayed.skipped,
        replayed.lost,
        match (replayed.over_budget, replayed.unread) {
            (0, 0) => String::new(),
            (n, 0) => format!(" ({n} of them beyond the spool's size)"),
            (_, unread) => format!(
                " (and the {unread} bytes after the first damage, whose messages the first \
                 spool format cannot read back)"
            ),
        },
        aside.display()
    );
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

/// Opens `path` to read and write, made with [`PRIVATE`] if it is new, never truncated.
fn open_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE)
        .open(path)
}

/// Copies the first `limit` bytes of `file` to a new `<spool>.damaged.<n>` (`n` one more
/// than any before, so no damage overwrites the evidence of an earlier one), first removing
/// the oldest copies so that at most [`DAMAGED_COPIES`] remain; returns the copy's path and
/// the ones removed.
fn save_aside(path: &Path, file: &File, limit: u64) -> io::Result<(PathBuf, Vec<PathBuf>)> {
    let mut copies = damaged_copies(path)?;
    copies.sort_unstable();
    let next = copies.last().map_or(1, |(n, _)| n + 1);
    let mut removed = Vec::new();
    while copies.len() >= DAMAGED_COPIES {
        let (_, oldest) = copies.remove(0);
        std::fs::remove_file(&oldest)?;
        removed.push(oldest);
    }
    let aside = sibling(path, &format!("damaged.{next}"));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE)
        .open(&aside)?;
    let mut source = file;
    source.seek(SeekFrom::Start(0))?;
    io::copy(&mut io::Read::take(source, limit), &mut out)?;
    out.sync_all()?;
    sync_parent(path)?;
    Ok((aside, removed))
}

/// The damaged copies beside the spool at `path`, with their numbers.
fn damaged_copies(path: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let prefix = sibling(path, "damaged.");
    let prefix = prefix
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut copies = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|name| name.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        copies.push((n, entry.path()));
    }
    Ok(copies)
}
