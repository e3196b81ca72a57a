//! Stream framing: frames over a byte stream (a serial link, a pipe) through `embedded-io`.
//!
//! Each frame is [COBS]-encoded and followed by one `0x00` byte. COBS removes every zero
//! from the frame, so a zero always ends a frame, and a reader that lands in the middle of
//! one, or in garbage, is back in step at the next zero. The overhead is one byte per 254
//! bytes of frame, plus the delimiter.
//!
//! - [`FrameWriter`] encodes and writes frames to an [`embedded_io::Write`].
//! - [`Deframer`] turns bytes, fed in pieces of any size, back into frames.
//! - [`FrameReader`] drives a [`Deframer`] from an [`embedded_io::Read`].
//!
//! `N`, the capacity of a writer or deframer, bounds the *encoded* frame without its
//! delimiter; [`encoded_len`] gives the size a frame needs.
//!
//! [COBS]: https://en.wikipedia.org/wiki/Consistent_Overhead_Byte_Stuffing

use core::fmt;

use embedded_io::{Read, Write};

/// The delimiter that ends every frame on a stream.
pub const DELIMITER: u8 = 0;

/// Bytes a frame of `frame_len` bytes takes on the stream, without the delimiter.
pub const fn encoded_len(frame_len: usize) -> usize {
    cobs::max_encoding_length(frame_len)
}

/// COBS-encodes `frame` into `out` and appends the delimiter; returns the bytes to send.
pub fn encode<'o>(frame: &[u8], out: &'o mut [u8]) -> Result<&'o [u8], StreamError<()>> {
    let n = cobs::try_encode(frame, out).map_err(|_| StreamError::Oversize)?;
    let delimiter = out.get_mut(n).ok_or(StreamError::Oversize)?;
    *delimiter = DELIMITER;
    Ok(&out[..=n])
}

/// Decodes one COBS-encoded frame in place (`encoded` without its delimiter); returns the
/// frame's length, its bytes now at the start of `encoded`.
pub fn decode_in_place(encoded: &mut [u8]) -> Result<usize, StreamError<()>> {
    cobs::decode_in_place(encoded).map_err(|_| StreamError::Corrupt)
}

/// Writes frames to a byte stream, encoding each through an internal `N`-byte buffer.
pub struct FrameWriter<W, const N: usize> {
    writer: W,
    buf: [u8; N],
}

impl<W: Write, const N: usize> FrameWriter<W, N> {
    /// A writer for frames whose encoding fits `N` bytes plus the delimiter.
    pub fn new(writer: W) -> Self {
        FrameWriter {
            writer,
            buf: [0; N],
        }
    }

    /// Encodes and writes one frame, then flushes the stream.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), StreamError<W::Error>> {
        let n = cobs::try_encode(frame, &mut self.buf).map_err(|_| StreamError::Oversize)?;
        self.writer
            .write_all(&self.buf[..n])
            .map_err(StreamError::Io)?;
        self.writer
            .write_all(&[DELIMITER])
            .map_err(StreamError::Io)?;
        self.writer.flush().map_err(StreamError::Io)
    }

    /// The underlying stream.
    pub fn into_inner(self) -> W {
        self.writer
    }
}

/// What [`Deframer::feed`] found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed<'f, 'i> {
    /// Every input byte was used and no frame is complete yet.
    NeedMore,
    /// A complete frame; `rest` is the input after its delimiter, to feed next.
    Frame {
        /// The decoded frame, valid until the next call.
        frame: &'f [u8],
        /// Input not yet used.
        rest: &'i [u8],
    },
    /// A frame was lost; the deframer has resynchronised (or will, at the next delimiter).
    Error {
        /// [`StreamError::Oversize`] or [`StreamError::Corrupt`].
        error: StreamError<()>,
        /// Input not yet used.
        rest: &'i [u8],
    },
}

#[cfg(feature = "defmt")]
impl defmt::Format for Feed<'_, '_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Feed::NeedMore => defmt::write!(f, "NeedMore"),
            Feed::Frame { frame, rest } => {
                defmt::write!(f, "Frame {{ frame: {=[u8]}, rest: {=[u8]} }}", frame, rest)
            }
            Feed::Error { error, rest } => {
                defmt::write!(f, "Error {{ error: {}, rest: {=[u8]} }}", error, rest)
            }
        }
    }
}

/// What one step of the deframer produced, by position, so a caller can borrow after a loop.
enum Step {
    NeedMore,
    Frame(usize),
    Error(StreamError<()>),
}

/// Reassembles COBS frames from bytes that arrive in pieces of any size.
///
/// A frame longer than `N` encoded bytes is reported as [`StreamError::Oversize`] once and
/// skipped up to its delimiter; a frame that is not valid COBS is reported as
/// [`StreamError::Corrupt`]. Empty frames (two delimiters in a row) are skipped silently,
/// so a sender may emit a delimiter first to flush a receiver's partial garbage.
pub struct Deframer<const N: usize> {
    buf: [u8; N],
    len: usize,
    discarding: bool,
}

impl<const N: usize> Default for Deframer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deframer<N> {
    /// An empty deframer.
    pub const fn new() -> Self {
        Deframer {
            buf: [0; N],
            len: 0,
            discarding: false,
        }
    }

    /// Feeds `input`; stops at the first complete frame or error.
    pub fn feed<'f, 'i>(&'f mut self, input: &'i [u8]) -> Feed<'f, 'i> {
        let (used, step) = self.step(input);
        let rest = &input[used..];
        match step {
            Step::NeedMore => Feed::NeedMore,
            Step::Frame(len) => Feed::Frame {
                frame: &self.buf[..len],
                rest,
            },
            Step::Error(error) => Feed::Error { error, rest },
        }
    }

    /// Consumes input up to the first frame or error; returns bytes used and what happened.
    fn step(&mut self, input: &[u8]) -> (usize, Step) {
        for (i, &byte) in input.iter().enumerate() {
            if byte == DELIMITER {
                let len = core::mem::take(&mut self.len);
                if core::mem::take(&mut self.discarding) || len == 0 {
                    continue;
                }
                match decode_in_place(&mut self.buf[..len]) {
                    // `[0x01]` is the COBS encoding of nothing: an empty frame, skipped.
                    Ok(0) => continue,
                    Ok(decoded) => return (i + 1, Step::Frame(decoded)),
                    Err(_) => return (i + 1, Step::Error(StreamError::Corrupt)),
                }
            }
            if self.discarding {
                continue;
            }
            match self.buf.get_mut(self.len) {
                Some(slot) => {
                    *slot = byte;
                    self.len += 1;
                }
                None => {
                    self.len = 0;
                    self.discarding = true;
                    return (i + 1, Step::Error(StreamError::Oversize));
                }
            }
        }
        (input.len(), Step::NeedMore)
    }
}

/// Reads frames from a byte stream through a [`Deframer`] of `N` bytes and a read buffer of
/// `R` bytes.
pub struct FrameReader<Rd, const N: usize, const R: usize = 64> {
    reader: Rd,
    deframer: Deframer<N>,
    chunk: [u8; R],
    start: usize,
    end: usize,
}

impl<Rd: Read, const N: usize, const R: usize> FrameReader<Rd, N, R> {
    /// A reader with empty buffers.
    pub fn new(reader: Rd) -> Self {
        FrameReader {
            reader,
            deframer: Deframer::new(),
            chunk: [0; R],
            start: 0,
            end: 0,
        }
    }

    /// Reads until a whole frame has arrived and returns it.
    ///
    /// [`StreamError::Oversize`] and [`StreamError::Corrupt`] report a lost frame; the reader
    /// stays usable and the next call returns the next good frame. At the end of the stream
    /// it returns [`StreamError::Eof`] (a partial frame at the end is discarded).
    pub fn read_frame(&mut self) -> Result<&[u8], StreamError<Rd::Error>> {
        loop {
            if self.start == self.end {
                let n = self.reader.read(&mut self.chunk).map_err(StreamError::Io)?;
                if n == 0 {
                    return Err(StreamError::Eof);
                }
                self.start = 0;
                self.end = n;
            }
            let (used, step) = self.deframer.step(&self.chunk[self.start..self.end]);
            self.start += used;
            match step {
                Step::NeedMore => {}
                Step::Frame(len) => return Ok(&self.deframer.buf[..len]),
                Step::Error(StreamError::Oversize) => return Err(StreamError::Oversize),
                Step::Error(_) => return Err(StreamError::Corrupt),
            }
        }
    }

    /// The underlying stream.
    pub fn into_inner(self) -> Rd {
        self.reader
    }
}

/// Why a stream frame could not be written or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StreamError<E> {
    /// The stream failed.
    Io(E),
    /// The stream ended.
    Eof,
    /// A frame is larger than the buffer allows.
    Oversize,
    /// The bytes between two delimiters are not a valid COBS encoding.
    Corrupt,
}

impl<E: fmt::Debug> fmt::Display for StreamError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Io(e) => write!(f, "stream i/o error: {e:?}"),
            StreamError::Eof => f.write_str("end of stream"),
            StreamError::Oversize => f.write_str("stream frame larger than the buffer"),
            StreamError::Corrupt => f.write_str("stream frame is not valid COBS"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for StreamError<E> {}
