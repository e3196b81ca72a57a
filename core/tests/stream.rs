//! Stream framing: split reads, garbage between frames, oversize frames, end of stream.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

use core::convert::Infallible;

use embedded_io::{ErrorType, Read};
use zmqrpc_core::stream::{self, Deframer, Feed, FrameReader, FrameWriter, StreamError};

/// A reader that hands out its bytes in pieces of the given sizes, in turn.
struct Trickle<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    turn: usize,
}

impl ErrorType for Trickle<'_> {
    type Error = Infallible;
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let want = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn encoded(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer: FrameWriter<&mut Vec<u8>, 1024> = FrameWriter::new(&mut out);
    for frame in frames {
        writer.write_frame(frame).unwrap();
    }
    out
}

fn read_all<const N: usize>(data: &[u8], sizes: &[usize]) -> Vec<Result<Vec<u8>, String>> {
    let mut reader: FrameReader<_, N, 7> = FrameReader::new(Trickle {
        data,
        sizes,
        turn: 0,
    });
    let mut out = Vec::new();
    loop {
        match reader.read_frame() {
            Ok(frame) => out.push(Ok(frame.to_vec())),
            Err(StreamError::Eof) => return out,
            Err(e) => out.push(Err(e.to_string())),
        }
    }
}

#[test]
fn frames_survive_any_read_split() {
    let long: Vec<u8> = (0..600u32).map(|i| (i % 7) as u8).collect(); // zeros and >254 runs
    let frames: [&[u8]; 4] = [b"\x01\x0e\x00\x00hello", &[0, 0, 0], &long, &[0xFF; 300]];
    let data = encoded(&frames);
    assert!(!data[..data.len() - 1].is_empty());
    for sizes in [&[1][..], &[2, 3], &[5, 1, 13], &[64], &[4096]] {
        let got = read_all::<1024>(&data, sizes);
        let want: Vec<_> = frames.iter().map(|f| Ok(f.to_vec())).collect();
        assert_eq!(got, want, "split {sizes:?}");
    }
}

#[test]
fn garbage_between_frames_costs_at_most_the_frame_it_touches() {
    let mut data = b"\x13\x37 line noise without a zero".to_vec();
    data.push(0);
    data.extend(encoded(&[b"first"]));
    data.extend_from_slice(b"\x05ab"); // a COBS block that ends early: corrupt
    data.push(0);
    data.extend(encoded(&[b"second"]));
    let got = read_all::<64>(&data, &[3]);
    let frames: Vec<_> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(frames.contains(&&b"first".to_vec()));
    assert!(frames.contains(&&b"second".to_vec()));
    assert!(
        got.contains(&Err(StreamError::<()>::Corrupt.to_string())),
        "{got:?}"
    );
}

#[test]
fn an_oversize_frame_is_reported_once_and_the_next_one_arrives() {
    let big = vec![0xAB; 100];
    let data = encoded(&[b"before", &big, b"after"]);
    let got = read_all::<32>(&data, &[1, 9]);
    assert_eq!(
        got,
        vec![
            Ok(b"before".to_vec()),
            Err(StreamError::<()>::Oversize.to_string()),
            Ok(b"after".to_vec()),
        ]
    );
}

#[test]
fn the_writer_refuses_a_frame_larger_than_its_buffer() {
    let mut out = Vec::new();
    let mut writer: FrameWriter<&mut Vec<u8>, 8> = FrameWriter::new(&mut out);
    assert_eq!(writer.write_frame(&[1; 20]), Err(StreamError::Oversize));
    assert!(out.is_empty(), "nothing half-written");
}

#[test]
fn feed_reports_frames_with_the_unused_rest() {
    let data = encoded(&[b"ab", b"cd"]);
    let mut deframer: Deframer<16> = Deframer::new();
    let rest = match deframer.feed(&data) {
        Feed::Frame { frame, rest } => {
            assert_eq!(frame, b"ab");
            rest
        }
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        deframer.feed(rest),
        Feed::Frame {
            frame: b"cd",
            rest: []
        }
    ));
    assert_eq!(deframer.feed(&[]), Feed::NeedMore);
}

#[test]
fn encode_matches_the_writer_and_counts_overhead() {
    let frame = [7u8; 300];
    let mut buf = [0u8; 400];
    let bytes = stream::encode(&frame, &mut buf).unwrap().to_vec();
    assert_eq!(bytes, encoded(&[&frame]));
    assert_eq!(bytes.len(), stream::encoded_len(frame.len()) + 1);
    assert_eq!(
        stream::encode(&frame, &mut [0u8; 301]),
        Err(StreamError::Oversize)
    );
}

#[test]
fn the_cobs_encoding_of_nothing_is_skipped_like_an_empty_frame() {
    // Found by fuzzing: `[0x01, 0x00]` decodes to zero bytes; the deframer must not yield it.
    let mut data = vec![0x01, 0x00, 0x00];
    data.extend(encoded(&[b"real"]));
    assert_eq!(read_all::<16>(&data, &[1]), vec![Ok(b"real".to_vec())]);
}
