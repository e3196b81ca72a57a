//! The spool file: recovery in order, a torn tail cut off, compaction, the size bound.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use zmqrpc_transport_std::{Spool, SpoolError};

fn temp(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("zmqrpc-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn messages(n: u8) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i; 10 + i as usize]).collect()
}

#[test]
fn pending_messages_come_back_in_order_after_reopening() {
    let path = temp("order");
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
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_torn_record_at_the_end_is_cut_off() {
    let path = temp("torn");
    let all = messages(3);
    {
        let (mut spool, _) = Spool::open(&path, 1 << 20).unwrap();
        for (i, m) in all.iter().enumerate() {
            spool.append(m, all[..i].iter().map(Vec::as_slice)).unwrap();
        }
    }
    let good = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of appending a fourth record.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&[b'M', 50, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(file);
    let (mut spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    // And appending goes on cleanly after the cut.
    spool
        .append(b"next", all.iter().map(Vec::as_slice))
        .unwrap();
    drop(spool);
    let (_, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered.last().unwrap(), b"next");
    // A flipped byte in the first payload: that record alone is lost, the rest kept.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[13 + 5] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered[..2], all[1..]);
    assert_eq!(recovered.last().unwrap(), b"next");
    assert_eq!(spool.lost_on_open(), 1);
    // The torn tail's copy is the first; this damage's the second.
    assert_eq!(
        std::fs::read(aside(&path, 2)).unwrap(),
        bytes,
        "the damaged file is kept aside"
    );
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(aside(&path, 1));
    let _ = std::fs::remove_file(aside(&path, 2));
}

/// `<spool>.damaged.<n>`.
fn aside(path: &std::path::Path, n: u32) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(format!(".damaged.{n}"));
    path.with_file_name(name)
}

/// Appends `all` to a new spool at `path`.
fn fill(path: &std::path::Path, all: &[Vec<u8>]) {
    let (mut spool, _) = Spool::open(path, 1 << 20).unwrap();
    for (i, m) in all.iter().enumerate() {
        spool.append(m, all[..i].iter().map(Vec::as_slice)).unwrap();
    }
}

/// Where record `index` starts in a spool of `all` with no delivery records.
fn offset(all: &[Vec<u8>], index: usize) -> usize {
    all[..index].iter().map(|m| 13 + m.len()).sum()
}

/// Regression: one damaged record dropped every record after it, although each has its
/// own checksum.
#[test]
fn one_damaged_record_costs_only_itself() {
    let all = messages(20);
    // A flipped byte in record 10's payload, in its length field, and in its tag.
    for (name, byte) in [("payload", 13 + 3), ("length", 2), ("tag", 0)] {
        let path = temp(&format!("middle-{name}"));
        fill(&path, &all);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offset(&all, 10) + byte] ^= 0x5A;
        std::fs::write(&path, &bytes).unwrap();
        let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
        let mut expected = all.clone();
        expected.remove(10);
        assert_eq!(recovered, expected, "damage in the {name}");
        assert_eq!(spool.lost_on_open(), 1, "damage in the {name}");
        drop(spool);
        // The spool was rewritten with the whole records: it opens clean now.
        let (spool, again) = Spool::open(&path, 1 << 20).unwrap();
        assert_eq!(again, expected);
        assert_eq!(spool.lost_on_open(), 0);
        assert!(!aside(&path, 2).exists(), "no damage the second time");
        let _ = std::fs::remove_file(aside(&path, 1));
        let _ = std::fs::remove_file(&path);
    }
}

/// A damaged message that was already delivered is not lost, and the delivery records
/// after it still pop the right messages.
#[test]
fn a_damaged_delivered_record_keeps_the_queue_in_step() {
    let path = temp("delivered-damage");
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
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset(&all, 1) + 13] ^= 0xFF; // message 1, delivered
    std::fs::write(&path, &bytes).unwrap();
    let (spool, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(recovered, all[3..]);
    assert_eq!(spool.lost_on_open(), 0);
    drop(spool);
    let _ = std::fs::remove_file(aside(&path, 1));
    let _ = std::fs::remove_file(&path);
}

/// Regression: `site.north` and `site.south` shared `site.damaged`, and a second damage
/// overwrote the copy kept of the first.
#[test]
fn damaged_copies_are_never_shared_or_overwritten() {
    let dir = std::env::temp_dir().join(format!("zmqrpc-spools-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let all = messages(3);
    let tear = |path: &std::path::Path, tail: &[u8]| {
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(tail).unwrap();
    };
    let north = dir.join("site.north");
    let south = dir.join("site.south");
    for (path, tail) in [(&north, &b"M\x01"[..]), (&south, &b"M\x02\x00"[..])] {
        fill(path, &all);
        tear(path, tail);
        let (_, recovered) = Spool::open(path, 1 << 20).unwrap();
        assert_eq!(recovered, all);
    }
    let first_north = std::fs::read(aside(&north, 1)).unwrap();
    let first_south = std::fs::read(aside(&south, 1)).unwrap();
    assert_ne!(first_north, first_south);
    assert!(first_north.ends_with(b"M\x01"));
    // Damage again: a second copy, the first untouched.
    tear(&north, b"M\x03");
    Spool::open(&north, 1 << 20).unwrap();
    assert_eq!(std::fs::read(aside(&north, 1)).unwrap(), first_north);
    assert!(std::fs::read(aside(&north, 2)).unwrap().ends_with(b"M\x03"));
    assert!(!dir.join("site.damaged").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn delivered_records_are_compacted_away_and_an_empty_spool_is_truncated() {
    let path = temp("compact");
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
        spool.len_bytes() < 2 * 5 * (13 + 32) + 64,
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
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_size_bound_refuses_a_message_that_does_not_fit() {
    let path = temp("bound");
    let (mut spool, _) = Spool::open(&path, 100).unwrap();
    spool.append(&[1; 50], std::iter::empty()).unwrap();
    match spool.append(&[2; 50], std::iter::once(&[1u8; 50][..])) {
        Err(SpoolError::Full { max_bytes: 100 }) => {}
        other => panic!("{other:?}"),
    }
    drop(spool);
    let (_, recovered) = Spool::open(&path, 100).unwrap();
    assert_eq!(
        recovered,
        [vec![1; 50]],
        "the refused message left no trace"
    );
    let _ = std::fs::remove_file(&path);
}
