//! Refused connections over real loopback sockets: every one is told why, at a bounded cost.

use std::time::Duration;

use bytes::Bytes;
use net::{Refusal, Refuser};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::task::TaskTracker;

const WAIT: Duration = Duration::from_secs(10);

/// Reads everything until the server closes: the frame, then end of stream.
async fn read_to_close(peer: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    timeout(WAIT, peer.read_to_end(&mut got))
        .await
        .expect("the refused connection was never closed")
        .expect("read");
    got
}

#[tokio::test]
async fn a_flood_of_refusals_is_answered_with_at_most_the_bound_under_way_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refuser = Refuser::new(4, Duration::from_millis(500));
    let tracker = TaskTracker::new();
    let frame = Bytes::from_static(b"\x0c\x00\xeb\x03server full");
    let mut peers = Vec::new();
    let mut ways = Vec::new();
    for _ in 0..200 {
        // Peers that never close: a graceful refusal lingers until its time is up.
        let peer = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        ways.push(refuser.refuse(stream, frame.clone(), &Default::default(), &tracker));
        assert!(refuser.in_flight() <= 4);
        peers.push(peer);
    }
    let graceful = ways.iter().filter(|w| **w == Refusal::Graceful).count();
    assert_eq!(graceful, 4, "the rest are answered without a task");
    for peer in &mut peers {
        assert_eq!(
            read_to_close(peer).await,
            frame,
            "every refused peer is told why"
        );
    }
    tracker.close();
    timeout(WAIT, tracker.wait())
        .await
        .expect("refusal tasks end within their linger time");
    assert_eq!(refuser.in_flight(), 0);
}

#[tokio::test]
async fn a_graceful_refusal_drops_what_the_peer_sent_so_the_close_is_not_a_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refuser = Refuser::new(4, Duration::from_secs(5));
    let tracker = TaskTracker::new();
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    // The peer has already sent a request the server will never read.
    tokio::io::AsyncWriteExt::write_all(&mut peer, &[7u8; 3000])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let frame = Bytes::from_static(b"\x08\x00\xeb\x03full");
    assert_eq!(
        refuser.refuse(stream, frame.clone(), &Default::default(), &tracker),
        Refusal::Graceful
    );
    let mut got = vec![0u8; frame.len()];
    timeout(WAIT, peer.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, frame);
    // Our side closes; the refusal ends as soon as it sees that.
    tokio::io::AsyncWriteExt::shutdown(&mut peer).await.unwrap();
    assert!(read_to_close(&mut peer).await.is_empty());
    tracker.close();
    timeout(Duration::from_secs(2), tracker.wait())
        .await
        .expect("the refusal ended when the peer closed, before its linger time");
}
