//! The linked libzmq carries core frames: a REQ/REP exchange over inproc, bounded in time.

use zmqrpc_core::{frame, Command, Frame, Header, Kind};
use zmqrpc_transport_std::libzmq_version;

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Add(u32, u32);
impl Command for Add {
    const NAME: &'static str = "math.add";
    type Response = u32;
}

#[test]
fn bundled_libzmq_is_4_3() {
    let (major, minor, _) = libzmq_version();
    assert_eq!((major, minor), (4, 3));
}

#[test]
fn a_core_frame_crosses_req_rep_over_inproc() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = zmq::Context::new();
    let rep = ctx.socket(zmq::REP)?;
    rep.set_rcvtimeo(5_000)?;
    rep.set_linger(0)?;
    rep.bind("inproc://smoke")?;
    let req = ctx.socket(zmq::REQ)?;
    req.set_rcvtimeo(5_000)?;
    req.set_sndtimeo(5_000)?;
    req.set_linger(0)?;
    req.connect("inproc://smoke")?;

    let mut buf = [0u8; 64];
    let request = Header::request(1, Add::KEY);
    req.send(frame::encode(&request, &Add(2, 40), &mut buf)?, 0)?;

    let incoming = rep.recv_bytes(0)?;
    let call = Frame::decode(&incoming)?;
    let Add(a, b) = call.body::<Add>()?;
    rep.send(frame::encode(&call.header.reply(), &(a + b), &mut buf)?, 0)?;

    let answer = req.recv_bytes(0)?;
    let reply = Frame::decode(&answer)?;
    assert!(request.is_answered_by(&reply.header));
    assert_eq!(reply.header.kind, Kind::Reply);
    assert_eq!(reply.body::<u32>()?, 42);
    Ok(())
}
