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
    // A flipped byte in the first payload: that record and what follows are not trusted.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[13 + 5] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let (_, recovered) = Spool::open(&path, 1 << 20).unwrap();
    assert!(recovered.is_empty());
    let damaged = path.with_extension("damaged");
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        bytes,
        "the damaged file is kept aside"
    );
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(damaged);
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
