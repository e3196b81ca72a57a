//! A command crosses a noisy serial link and comes back answered.
//!
//! The same frames zmqrpc sends over ZeroMQ travel here over a byte stream, COBS-framed, with
//! line noise injected between them: the reader resynchronises at the next frame and the
//! damaged bytes are reported, not silently lost.
//!
//! Run with `cargo run --example serial_link`.

use serde::{Deserialize, Serialize};
use zmqrpc::stream::{FrameReader, FrameWriter, StreamError};
use zmqrpc::{frame, Command, Frame, Header, Kind};

#[derive(Serialize, Deserialize, Debug)]
struct ReadTemperature {
    sensor: u8,
}

impl Command for ReadTemperature {
    const NAME: &'static str = "sensor.read_temperature";
    type Response = f32;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The "wire": what a UART would carry from the host to the device.
    let mut wire: Vec<u8> = Vec::new();
    let mut buf = [0u8; 64];
    {
        let mut link: FrameWriter<&mut Vec<u8>, 128> = FrameWriter::new(&mut wire);
        for (seq, sensor) in [(1, 3), (2, 7)] {
            let request = Header::request(seq, ReadTemperature::KEY);
            link.write_frame(frame::encode(
                &request,
                &ReadTemperature { sensor },
                &mut buf,
            )?)?;
            // A burst of line noise between the two frames.
            if seq == 1 {
                link.write_frame(&[0xde, 0xad])?;
            }
        }
    }
    // Corrupt the noise frame's COBS so the reader sees garbage, not a frame.
    if let Some(at) = wire.windows(2).position(|w| w == [0xde, 0xad]) {
        wire[at - 1] = 0x7f;
    }
    println!("{} bytes on the wire", wire.len());

    // The "device": reads frames, answers each request.
    let mut reader: FrameReader<&[u8], 128> = FrameReader::new(&wire[..]);
    loop {
        let bytes = match reader.read_frame() {
            Ok(bytes) => bytes,
            Err(StreamError::Eof) => break,
            Err(e) => {
                println!("lost a frame: {e}");
                continue;
            }
        };
        let request = Frame::decode(bytes)?;
        assert_eq!(request.header.kind, Kind::Request);
        let cmd: ReadTemperature = request.body()?;
        let celsius = 20.0 + f32::from(cmd.sensor) / 2.0;
        let mut out = [0u8; 32];
        let reply = frame::encode(&request.header.reply(), &celsius, &mut out)?;
        let answer = Frame::decode(reply)?;
        println!(
            "request #{} {}({:?}) -> {} °C",
            request.header.seq,
            ReadTemperature::NAME,
            cmd,
            answer.body::<f32>()?
        );
    }
    Ok(())
}
