//! Sessions over real loopback sockets: events, bounds, closes.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use net::codec::encode_raw;
use net::{
    DisconnectReason, FrameError, SendError, Session, SessionConfig, SessionEvent, SessionId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::task::TaskTracker;

const WAIT: Duration = Duration::from_secs(5);

/// A session on the accepting side, and the raw peer socket.
async fn pair(
    config: SessionConfig,
) -> (
    Session,
    TcpStream,
    mpsc::Receiver<SessionEvent>,
    TaskTracker,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let (tx, rx) = mpsc::channel(1024);
    let tracker = TaskTracker::new();
    let session = Session::spawn(SessionId(1), stream, &config, tx, &tracker);
    (session, peer, rx, tracker)
}

fn frame(id: u16, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    encode_raw(id, payload, &mut b);
    b.freeze()
}

async fn next(rx: &mut mpsc::Receiver<SessionEvent>) -> SessionEvent {
    timeout(WAIT, rx.recv())
        .await
        .expect("no session event in time")
        .expect("event queue closed")
}

/// Everything the peer gets until the session's end of stream (a reset fails the test).
async fn read_to_end(peer: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    timeout(WAIT, peer.read_to_end(&mut got))
        .await
        .expect("no end of stream in time")
        .expect("a clean end of stream, not a reset");
    got
}

async fn closed_reason(rx: &mut mpsc::Receiver<SessionEvent>) -> DisconnectReason {
    loop {
        if let SessionEvent::Closed { reason, .. } = next(rx).await {
            return reason;
        }
    }
}

#[tokio::test]
async fn received_frames_arrive_in_order_as_zero_copy_packets() {
    let (session, mut peer, mut rx, _t) = pair(SessionConfig::default()).await;
    let mut bytes = Vec::new();
    for i in 0..10u16 {
        bytes.extend_from_slice(&frame(2000 + i, &[i as u8; 3]));
    }
    peer.write_all(&bytes).await.unwrap();
    for i in 0..10u16 {
        match next(&mut rx).await {
            SessionEvent::Received {
                session: s, packet, ..
            } => {
                assert_eq!(s, SessionId(1));
                assert_eq!(packet.id, 2000 + i);
                assert_eq!(&packet.payload[..], &[i as u8; 3]);
            }
            other => panic!("{other:?}"),
        }
        session.release_credit(1);
    }
}

#[tokio::test]
async fn a_batch_is_written_whole_and_in_order() {
    let (session, mut peer, _rx, _t) = pair(SessionConfig::default()).await;
    let mut frames: Vec<Bytes> = (0..100u16).map(|i| frame(1000 + i, b"abc")).collect();
    let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    session.send(&mut frames).unwrap();
    let mut got = vec![0u8; expected.len()];
    timeout(WAIT, peer.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn without_credit_the_session_stops_reading_until_credit_is_given_back() {
    let config = SessionConfig {
        inbound_credit: 2,
        ..SessionConfig::default()
    };
    let (session, mut peer, mut rx, _t) = pair(config).await;
    let mut bytes = Vec::new();
    for _ in 0..6 {
        bytes.extend_from_slice(&frame(2001, b""));
    }
    peer.write_all(&bytes).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(next(&mut rx).await, SessionEvent::Received { .. }));
    }
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "a third frame was handed over without credit"
    );
    session.release_credit(2);
    for _ in 0..2 {
        assert!(matches!(next(&mut rx).await, SessionEvent::Received { .. }));
    }
}

#[tokio::test]
async fn peer_that_never_reads_makes_send_refuse_as_slow_consumer() {
    let config = SessionConfig {
        max_outbound_bytes: 64 * 1024,
        ..SessionConfig::default()
    };
    let (mut session, _peer, mut rx, _t) = pair(config).await;
    let big = frame(1000, &[7u8; 8000]);
    let mut refused = None;
    for _ in 0..10_000 {
        match session.send(&mut vec![big.clone()]) {
            Ok(()) => tokio::task::yield_now().await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(refused, Some(SendError::SlowConsumer { .. })),
        "{refused:?}"
    );
    assert!(session.queued_bytes() <= 64 * 1024);
    session.abort(DisconnectReason::SlowConsumer);
    assert_eq!(closed_reason(&mut rx).await, DisconnectReason::SlowConsumer);
}

#[tokio::test]
async fn graceful_close_writes_what_is_queued_then_closes() {
    let (mut session, mut peer, mut rx, _t) = pair(SessionConfig::default()).await;
    session.send(&mut vec![frame(1003, b"bye")]).unwrap();
    session.close(DisconnectReason::Replaced);
    assert_eq!(read_to_end(&mut peer).await, frame(1003, b"bye").to_vec());
    drop(peer);
    assert_eq!(closed_reason(&mut rx).await, DisconnectReason::Replaced);
    assert!(matches!(
        session.send(&mut vec![frame(1, b"")]),
        Err(SendError::Closed)
    ));
}

#[tokio::test]
async fn graceful_close_reads_what_the_peer_still_sends_so_it_is_not_reset() {
    let config = SessionConfig {
        linger: Duration::from_secs(5),
        ..SessionConfig::default()
    };
    let (mut session, mut peer, mut rx, _t) = pair(config).await;
    // The peer is still talking when the server closes.
    let chatter: Vec<u8> = (0..200)
        .flat_map(|_| frame(2001, b"still here").to_vec())
        .collect();
    peer.write_all(&chatter).await.unwrap();
    session.send(&mut vec![frame(1003, b"last words")]).unwrap();
    session.close(DisconnectReason::Replaced);
    assert_eq!(
        read_to_end(&mut peer).await,
        frame(1003, b"last words").to_vec()
    );
    // The server has closed its side but still reads: more input is taken, not answered with
    // a reset (a reset would make the second write fail).
    for _ in 0..2 {
        peer.write_all(&chatter).await.expect("input still read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(peer);
    assert_eq!(closed_reason(&mut rx).await, DisconnectReason::Replaced);
}

#[tokio::test]
async fn undersized_and_oversized_headers_end_the_session_as_protocol_errors() {
    let (_s, mut peer, mut rx, _t) = pair(SessionConfig::default()).await;
    peer.write_all(&[2, 0, 0, 0]).await.unwrap();
    assert_eq!(
        closed_reason(&mut rx).await,
        DisconnectReason::Protocol(FrameError::Undersized(2))
    );
    let config = SessionConfig {
        max_packet_size: 100,
        ..SessionConfig::default()
    };
    let (_s, mut peer, mut rx, _t) = pair(config).await;
    peer.write_all(&[101, 0, 1, 0]).await.unwrap();
    assert_eq!(
        closed_reason(&mut rx).await,
        DisconnectReason::Protocol(FrameError::Oversized {
            size: 101,
            max: 100
        })
    );
}

#[tokio::test]
async fn peer_closing_ends_the_session_once_with_peer_closed() {
    let (_s, peer, mut rx, tracker) = pair(SessionConfig::default()).await;
    drop(peer);
    assert_eq!(closed_reason(&mut rx).await, DisconnectReason::PeerClosed);
    tracker.close();
    timeout(WAIT, tracker.wait()).await.expect("tasks ended");
    assert!(rx.try_recv().is_err(), "no event after Closed");
}

#[tokio::test]
async fn the_first_reason_recorded_is_the_one_reported() {
    let (mut session, _peer, mut rx, _t) = pair(SessionConfig::default()).await;
    session.abort(DisconnectReason::IdleTimeout);
    session.close(DisconnectReason::Shutdown);
    assert_eq!(closed_reason(&mut rx).await, DisconnectReason::IdleTimeout);
}

/// A frame whose buffer reports when the last reference to it is dropped.
fn tracked_frame(
    id: u16,
    payload: &[u8],
) -> (Bytes, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    struct Owner(Vec<u8>, std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Owner {
        fn drop(&mut self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bytes = frame(id, payload).to_vec();
    (Bytes::from_owner(Owner(bytes, dropped.clone())), dropped)
}

#[tokio::test]
async fn an_idle_session_keeps_no_reference_to_the_frames_it_has_written() {
    let (session, mut peer, _rx, _t) = pair(SessionConfig::default()).await;
    let (tracked, dropped) = tracked_frame(1000, b"last words");
    let len = tracked.len();
    session.send(&mut vec![tracked]).unwrap();
    let mut buf = vec![0u8; len];
    timeout(WAIT, peer.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !dropped.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the write task still holds the buffer of a frame it wrote"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(session.queued_bytes(), 0);
}

/// Over plain TCP the owner writes to the socket itself while nothing is queued; what the
/// socket does not take waits for a write task. A peer that stops reading, then reads again,
/// gets every byte in order: those that waited, then those written directly once the queue
/// was empty again, then the end.
#[tokio::test]
async fn batches_that_find_the_socket_full_wait_in_order_and_later_ones_go_straight_out() {
    let config = SessionConfig {
        max_outbound_bytes: 64 << 20,
        outbound_batches: 4096,
        ..SessionConfig::default()
    };
    let (mut session, mut peer, mut rx, _t) = pair(config).await;
    let payload = vec![7u8; 4000];
    let mut expected = Vec::new();
    let mut sent = 0u16;
    let mut batch = |count: u16, expected: &mut Vec<u8>| {
        let frames: Vec<Bytes> = (0..count)
            .map(|_| {
                sent = sent.wrapping_add(1);
                frame(sent, &payload)
            })
            .collect();
        for f in &frames {
            expected.extend_from_slice(f);
        }
        frames
    };
    // Far more than the socket's buffers hold: most of it waits for the write task.
    for _ in 0..300 {
        session.send(&mut batch(10, &mut expected)).unwrap();
    }
    assert!(session.queued_bytes() > 0, "the socket did not take it all");
    let mut got = vec![0u8; expected.len()];
    timeout(WAIT, peer.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(
        got == expected,
        "the first batches arrive whole and in order"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while session.queued_bytes() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Nothing queued now: these go straight to the socket.
    let mut later = Vec::new();
    for _ in 0..5 {
        let mut frames = batch(3, &mut later);
        session.send(&mut frames).unwrap();
        assert!(
            frames.is_empty() && frames.capacity() >= 3,
            "the buffer is kept"
        );
    }
    session.close(DisconnectReason::Shutdown);
    let rest = read_to_end(&mut peer).await;
    assert!(rest == later, "the later batches follow, then the end");
    drop(peer);
    assert_eq!(closed_reason(&mut rx).await, DisconnectReason::Shutdown);
}
