//! The spool file: recovery in order, a torn tail cut off, damage costing only itself and
//! kept in a bounded number of copies, compaction, the size bound, one owner at a time, and
//! spools of the first format read and rewritten.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use zmqrpc_transport_std::{Spool, SpoolError};

/// A fresh folder for one test's spools.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zmqrpc-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Messages that can be found in the file by their text (COBS keeps bytes other than zero).
fn messages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("message {i:03} {}", "x".repeat(i)).into_bytes())
        .collect()
}

/// Appends `all` to a new spool at `path`.
fn fill(path: &Path, all: &[Vec<u8>]) {
    let (mut spool, _) = Spool::open(path, 1 << 20).unwrap();
    for (i, m) in all.iter().enumerate() {
        spool.append(m, all[..i].iter().map(Vec::as_slice)).unwrap();
    }
}

/// Flips a byte inside the first occurrence of `text` in the file at `path`.
fn damage(path: &Path, text: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(text.len()).position(|w| w == text).unwrap();
    bytes[at + 2] ^= 0x20;
    std::fs::write(path, &bytes).unwrap();
}

/// `<spool>.damaged.<n>`.
fn aside(path: &Path, n: u32) -> PathBuf {
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(format!(".damaged.{n}"));
    path.with_file_name(name)
}

/// The damaged copies beside `path`.
fn copies(path: &Path) -> Vec<PathBuf> {
    let mut copies: Vec<PathBuf> = (1..100)
        .map(|n| aside(path, n))
        .filter(|p| p.exists())
        .collect();
    copies.sort();
    copies
}

#[test]
fn pending_messages_come_back_in_order_after_reopening() {
    let path = folder("order").join("spool");
    let all = messages(6);
    {
        let (mut spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
        assert!(recovered.is_empty());
        for (i, m) in all.iter().enumerate() {
            spool.append(m, all[..i].iter().map(Vec::as_slice)).unwrap();
        }
        spool.delivered(all[1..].iter().map(Vec::as_slice)).unwrap();
        spool.delivered(all[2..].iter().map(Vec::as_slice)).unwrap();
    }
    let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all[2..]);
    assert_eq!(spool.pending(), 4);
    assert_eq!(spool.recovery().recovered, 4);
    assert_eq!(spool.lost_on_open(), 0);
}

#[test]
fn a_torn_record_at_the_end_is_cut_off_without_a_copy() {
    let path = folder("torn").join("spool");
    let all = messages(3);
    fill(&path, &all);
    let good = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of appending a fourth record: no delimiter yet.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"\x0cmessage 003").unwrap();
    drop(file);
    let (mut spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all);
    assert_eq!(spool.recovery().torn_bytes, 12);
    assert_eq!(spool.recovery().damaged_copy, None);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    assert!(copies(&path).is_empty(), "a torn append is no damage");
    // And appending goes on cleanly after the cut.
    spool
        .append(b"next", all.iter().map(Vec::as_slice))
        .unwrap();
    drop(spool);
    let (_, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered.last().unwrap(), b"next");
}

/// Regression: one damaged record dropped every record after it, although each has its
/// own checksum.
#[test]
fn one_damaged_record_costs_only_itself_and_the_file_as_found_is_kept() {
    let path = folder("middle").join("spool");
    let all = messages(20);
    fill(&path, &all);
    damage(&path, b"message 010");
    let found = std::fs::read(&path).unwrap();
    let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    let mut expected = all.clone();
    expected.remove(10);
    assert_eq!(recovered, expected);
    assert_eq!(spool.lost_on_open(), 1);
    assert_eq!(spool.recovery().skipped, 1);
    assert_eq!(
        spool.recovery().damaged_copy.as_deref(),
        Some(&*aside(&path, 1))
    );
    assert_eq!(std::fs::read(aside(&path, 1)).unwrap(), found);
    drop(spool);
    // The spool was rewritten with the whole records: it opens clean now.
    let (spool, again) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(again, expected);
    assert_eq!(spool.lost_on_open(), 0);
    assert_eq!(copies(&path).len(), 1, "no damage the second time");
}

/// A damaged message that was already delivered is not lost, and the delivery records
/// after it still pop the right messages.
#[test]
fn a_damaged_delivered_record_keeps_the_queue_in_step() {
    let path = folder("delivered-damage").join("spool");
    let all = messages(6);
    fill(&path, &all);
    {
        let (mut spool, _) = Spool::open(&path, 1 << 20).unwrap();
        for done in 1..=3 {
            spool
                .delivered(all[done..].iter().map(Vec::as_slice))
                .unwrap();
        }
    }
    damage(&path, b"message 001");
    let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all[3..]);
    assert_eq!(spool.lost_on_open(), 0);
}

/// Regression: every damage left a whole copy of the spool beside it, never cleaned, so
/// repeated damage filled the card.
#[test]
fn damaged_copies_are_bounded_in_number_never_shared_and_the_newest_kept() {
    let dir = folder("copies");
    let all = messages(3);
    let north = dir.join("site.north");
    let south = dir.join("site.south");
    for path in [&north, &south] {
        fill(path, &all);
        damage(path, b"message 001");
        let (spool, _) = Spool::open(path, 1 << 20).unwrap();
        assert_eq!(spool.lost_on_open(), 1);
    }
    assert_ne!(
        std::fs::read(aside(&north, 1)).unwrap(),
        std::fs::read(aside(&south, 1)).unwrap()
    );
    // Five more damages to north: never more than three copies, the newest ones.
    for round in 0..5 {
        fill(&north, &all);
        damage(&north, b"message 002");
        let (spool, _) = Spool::open(&north, 1 << 20).unwrap();
        let copy = spool.recovery().damaged_copy.clone().unwrap();
        assert_eq!(copy, aside(&north, round + 2));
        drop(spool);
        let kept = copies(&north);
        assert!(kept.len() <= 3, "{kept:?}");
        assert_eq!(kept.last(), Some(&copy));
        // Empty the spool for the next round.
        let (mut spool, pending) = Spool::open(&north, 1 << 20).unwrap();
        for i in 0..pending.len() {
            spool
                .delivered(pending[i + 1..].iter().map(Vec::as_slice))
                .unwrap();
        }
    }
    assert_eq!(
        copies(&north),
        [aside(&north, 4), aside(&north, 5), aside(&north, 6)]
    );
    assert_eq!(copies(&south), [aside(&south, 1)]);
    assert!(!dir.join("site.damaged.1").exists());
}

#[test]
fn a_copy_is_at_most_the_spools_size() {
    let path = folder("copy-size").join("spool");
    // A file of 3 MiB (a crafted one: a spool never grows past its bound) for a spool of
    // 64 KiB: the copy keeps its first MiB.
    let mut bytes = vec![0x41u8; 3 << 20];
    bytes.push(0);
    std::fs::write(&path, &bytes).unwrap();
    let (spool, recovered) = Spool::open(&path, 64 << 10).unwrap();
    assert!(recovered.is_empty());
    assert_eq!(spool.recovery().skipped, 1);
    let copy = spool.recovery().damaged_copy.clone().unwrap();
    assert_eq!(std::fs::metadata(copy).unwrap().len(), 1 << 20);
}

#[test]
fn delivered_records_are_compacted_away_and_an_empty_spool_is_truncated() {
    let path = folder("compact").join("spool");
    let (mut spool, _) = Spool::open(&path, 1 << 20).unwrap();
    let mut pending: std::collections::VecDeque<Vec<u8>> = Default::default();
    for round in 0..200u32 {
        let m = round.to_le_bytes().repeat(8);
        spool.append(&m, pending.iter().map(Vec::as_slice)).unwrap();
        pending.push_back(m);
        if pending.len() > 5 {
            pending.pop_front();
            spool.delivered(pending.iter().map(Vec::as_slice)).unwrap();
        }
    }
    // 5 pending messages of 32 bytes: the file stays small instead of growing with history.
    assert!(
        spool.len_bytes() < 2 * 5 * (32 + 16) + 64,
        "{}",
        spool.len_bytes()
    );
    drop(spool);
    let (mut spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, Vec::from(pending.clone()));
    while pending.pop_front().is_some() {
        spool.delivered(pending.iter().map(Vec::as_slice)).unwrap();
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn the_size_bound_refuses_a_message_that_does_not_fit() {
    let path = folder("bound").join("spool");
    let (mut spool, _) = Spool::open(&path, 120).unwrap();
    spool.append(&[1; 50], std::iter::empty()).unwrap();
    match spool.append(&[2; 50], std::iter::once(&[1u8; 50][..])) {
        Err(SpoolError::Full { max_bytes: 120 }) => {}
        other => panic!("{other:?}"),
    }
    drop(spool);
    let (_, recovered) = Spool::open(&path, 120).unwrap();
    assert_eq!(
        recovered,
        [vec![1; 50]],
        "the refused message left no trace"
    );
}

/// Regression: two proxies on one spool each replayed, truncated and compacted it; the
/// first then appended to an unlinked file.
#[test]
fn a_second_spool_on_the_same_path_is_refused_naming_the_holder() {
    let path = folder("locked").join("spool");
    let all = messages(2);
    fill(&path, &all);
    let (first, _) = Spool::open(&path, 1 << 20).unwrap();
    match Spool::open(&path, 1 << 20) {
        Err(e @ SpoolError::Locked { .. }) => {
            let SpoolError::Locked {
                path: named,
                holder,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(named, &path);
            assert_eq!(*holder, Some(std::process::id()));
            let text = e.to_string();
            assert!(text.contains("in use by process"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // The refused open touched nothing.
    assert_eq!(first.pending(), 2);
    drop(first);
    let (_, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all);
}

/// A spool written by the first format (tag, length, unsalted check; no header) is read
/// and rewritten in the current one.
#[test]
fn a_spool_of_the_first_format_is_read_and_rewritten() {
    let path = folder("v1").join("spool");
    let all = messages(4);
    let mut bytes = Vec::new();
    for m in &all {
        bytes.push(b'M');
        bytes.extend_from_slice(&(m.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&zmqrpc_core::key::fnv1a64(m).to_le_bytes());
        bytes.extend_from_slice(m);
    }
    bytes.push(b'D');
    std::fs::write(&path, &bytes).unwrap();
    let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all[1..]);
    assert_eq!(spool.recovery().upgraded_from, Some(1));
    assert_eq!(spool.lost_on_open(), 0);
    drop(spool);
    assert_ne!(std::fs::read(&path).unwrap()[0], b'M');
    let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all[1..]);
    assert_eq!(spool.recovery().upgraded_from, None);
}

#[test]
fn staged_messages_are_pending_only_once_committed_and_survive_a_delivery_meanwhile() {
    let path = folder("staged").join("spool");
    let all = messages(4);
    {
        let (mut spool, _) = Spool::open(&path, 1 << 20).unwrap();
        spool.append(&all[0], std::iter::empty()).unwrap();
        spool
            .stage(&all[1], all[..1].iter().map(Vec::as_slice))
            .unwrap();
        spool
            .stage(&all[2], all[..2].iter().map(Vec::as_slice))
            .unwrap();
        assert_eq!((spool.pending(), spool.staged()), (1, 2));
        // The only pending message delivered while two are staged: the file is not cut.
        spool
            .delivered(all[1..3].iter().map(Vec::as_slice))
            .unwrap();
        assert_eq!((spool.pending(), spool.staged()), (0, 2));
        spool.commit().unwrap();
        assert_eq!((spool.pending(), spool.staged()), (2, 0));
        spool
            .stage(&all[3], all[1..3].iter().map(Vec::as_slice))
            .unwrap();
        spool.commit().unwrap();
        // Committing nothing is a no-op.
        spool.commit().unwrap();
    }
    let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all[1..]);
    assert_eq!(spool.pending(), 3);
}

#[test]
fn a_compaction_while_staging_makes_the_staged_messages_pending() {
    let path = folder("staged-compact").join("spool");
    let m = [7u8; 100];
    let (mut spool, _) = Spool::open(&path, 2048).unwrap();
    // Some delivered history in the file (too little to compact on delivery), then stage
    // until the file is full: the stage that does not fit compacts first.
    for _ in 0..10 {
        spool.append(&m, std::iter::empty()).unwrap();
    }
    let pending: Vec<&[u8]> = vec![&m; 10];
    for left in [9, 8, 7] {
        spool.delivered(pending[..left].iter().copied()).unwrap();
    }
    let before = spool.pending();
    assert_eq!(before, 7, "no compaction on delivery yet");
    let mut staged = 0;
    // Stage until a compaction happens: the staged count falls back to one.
    loop {
        let held: Vec<&[u8]> = vec![&m; before + staged];
        spool.stage(&m, held.into_iter()).unwrap();
        staged += 1;
        if spool.staged() < staged {
            break;
        }
        assert!(staged < 64, "no compaction happened");
    }
    assert_eq!(
        spool.staged(),
        1,
        "the ones staged before the compaction were synced"
    );
    assert_eq!(spool.pending(), before + staged - 1);
    spool.commit().unwrap();
    drop(spool);
    let (_, recovered) = Spool::open(&path, 2048).unwrap();
    assert_eq!(recovered.len(), before + staged);
}
