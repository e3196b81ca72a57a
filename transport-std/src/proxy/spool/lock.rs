//! One owner per spool: an exclusive `flock` on `<spool>.lock`, held while the spool is
//! open.
//!
//! The lock is on a file of its own because compaction renames a new file over the spool:
//! a lock on the spool itself would stay with the old file, and a second proxy opening the
//! path would find the new one free. The lock file is never renamed or removed, so whoever
//! opens the path meets the same lock. It holds the owner's process id, to name it.
//! `flock` locks belong to an open file: a second spool on the same path in the same
//! process is refused as well, and the kernel lets go when the owner exits, however it
//! exits.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{open_private, sibling, SpoolError};

/// The held lock; let go when dropped.
#[derive(Debug)]
pub(super) struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock of the spool at `spool`, or says who holds it.
    pub(super) fn take(spool: &Path) -> Result<Lock, SpoolError> {
        let path = sibling(spool, "lock");
        let io = |op| {
            let path = path.clone();
            move |source| SpoolError::Io { op, path, source }
        };
        let mut file = open_private(&path).map_err(io("open lock"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(SpoolError::Locked {
                    path: spool.to_path_buf(),
                    holder: holder.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("lock")(e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0).map_err(io("write lock"))?;
        file.seek(SeekFrom::Start(0)).map_err(io("write lock"))?;
        file.write_all(pid.as_bytes()).map_err(io("write lock"))?;
        Ok(Lock { _file: file })
    }
}
