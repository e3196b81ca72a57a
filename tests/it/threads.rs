//! Threads the library starts are gone after stop + join. Alone in its test binary, so no
//! other test's threads are counted.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use zmqrpc::transport::{Incoming, Receiver, RpcClient, Sender, Users};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn servers_receivers_and_clients_leave_no_thread_behind() {
    let before = threads();
    for _ in 0..3 {
        let (pub_endpoint, rep_endpoint);
        let mut client;
        {
            client = RpcClient::builder()
                .publish_on("tcp://127.0.0.1:*")
                .connect()
                .unwrap();
            pub_endpoint = client.publish_endpoints()[0].clone();
        }
        let server = standard_server()
            .rep("tcp://127.0.0.1:*")
            .subscribe(&pub_endpoint)
            .bind()
            .unwrap();
        rep_endpoint = server.rep_endpoints()[0].clone();
        let running = server.spawn().unwrap();
        // A protected receiver also runs a ZAP handler thread.
        let receiver = Receiver::builder()
            .users(Users::new().with("u", "p"))
            .rep("tcp://127.0.0.1:*")
            .bind()
            .unwrap();
        let receiver_endpoint = receiver.rep_endpoints()[0].clone();
        let receiver = receiver
            .spawn(|_: Incoming, reply: &mut Vec<u8>| reply.extend_from_slice(b"ok"))
            .unwrap();
        assert!(threads() > before);
        let mut caller = crate::common::client(&rep_endpoint);
        assert_eq!(caller.call(&Add(1, 2)).unwrap(), 3);
        let mut raw = Sender::builder()
            .req(&receiver_endpoint)
            .credentials(zmqrpc::transport::Credentials::new("u", "p"))
            .connect()
            .unwrap();
        assert_eq!(raw.request(b"hi", secs(5)).unwrap().bytes, b"ok");
        client.notify(&Sample { seq: 0, value: 0.0 }).unwrap();
        running.stop_and_wait().unwrap();
        receiver.stop_and_wait().unwrap();
        // A pool: a proxy thread and its workers.
        let pool = zmqrpc::transport::RpcServer::builder()
            .workers(3)
            .register_clone(|Add(a, b): Add| Ok::<_, zmqrpc::transport::ServiceError>(a + b))
            .unwrap()
            .rep("tcp://127.0.0.1:*")
            .bind()
            .unwrap();
        let pool_endpoint = pool.rep_endpoints()[0].clone();
        let pool = pool.spawn().unwrap();
        assert_eq!(
            crate::common::client(&pool_endpoint)
                .call(&Add(2, 2))
                .unwrap(),
            4
        );
        // A shared client: its I/O thread, with calls from clones on other threads.
        let shared = zmqrpc::transport::SharedClient::builder()
            .req(&pool_endpoint)
            .connect()
            .unwrap();
        let clones: Vec<_> = (0..4)
            .map(|i| {
                let shared = shared.clone();
                std::thread::spawn(move || shared.call(&Add(i, i)).unwrap())
            })
            .collect();
        for (i, clone) in clones.into_iter().enumerate() {
            assert_eq!(clone.join().unwrap(), 2 * i as i64);
        }
        drop(shared);
        pool.stop_and_wait().unwrap();
        drop((client, caller, raw));
    }
    // libzmq's own I/O and reaper threads end when their context is terminated, which the
    // last socket's drop does; give the reaper a moment.
    assert!(
        eventually(secs(2), || threads() == before),
        "{} threads before, {} after",
        before,
        threads()
    );
}
