//! Misbehaving peers over real sockets: corrupt streams, a client that stops reading, a client
//! that sends faster than the server reads. Each is dealt with alone; the others keep going.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{start_server, test_config, TestClient, TestServer};
use protocol::world::{C2sChat, C2sPing, S2cChat};
use protocol::S2cMessage;
use tokio::io::AsyncWriteExt;

/// Two clients chatting in a room, and an offender (logged in, in the same room) that sends
/// `bytes`: the offender's connection ends; the two others chat on before and after, and see
/// the offender leave the room.
async fn bad_input_closes_only_the_offender(server: &TestServer, bytes: &[u8]) {
    let mut alice = server.member("alice", "calm").await;
    let mut bob = server.member("bob", "calm").await;
    let mut offender = server.member("offender", "calm").await;
    for member in [&mut alice, &mut bob] {
        member.await_presence("offender").await;
    }
    alice.say("calm", "before", 1).await;
    for member in [&mut alice, &mut bob, &mut offender] {
        member.expect_chat("calm", "alice", "before").await;
    }

    // The offender may be cut off while it writes: a failed write is fine.
    let _ = offender.try_send_raw(bytes).await;
    let after = offender.expect_closed().await;
    assert!(
        after.iter().all(|m| !matches!(m, S2cMessage::S2cChat(_))),
        "the offender got chat after its bad input: {after:?}"
    );

    for member in [&mut alice, &mut bob] {
        let (presence, skipped) = member
            .recv_until_with_skipped(|m| matches!(m, S2cMessage::S2cRoomPresence(_)))
            .await;
        assert!(skipped.is_empty(), "{skipped:?}");
        match presence {
            S2cMessage::S2cRoomPresence(p) => {
                assert_eq!((p.username.as_str(), p.joined), ("offender", false))
            }
            _ => unreachable!(),
        }
    }
    bob.say("calm", "after", 2).await;
    for member in [&mut alice, &mut bob] {
        member.expect_chat("calm", "bob", "after").await;
    }
    alice.ping_next(1).await;
    assert_eq!(alice.member_count("calm").await, Some(2));

    // New connections are still welcome.
    let mut late = server.member("late", "calm").await;
    late.say("calm", "hello all", 3).await;
    late.expect_chat("calm", "late", "hello all").await;
    alice.expect_chat("calm", "late", "hello all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_only_that_session() {
    let server = start_server(test_config()).await;
    // An HTTP request: its first two bytes read as a frame size of 0x4547 (17735), over the
    // 8192 default maximum.
    bad_input_closes_only_the_offender(&server, b"GET / HTTP/1.1\r\nHost: world\r\n\r\n").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_after_a_valid_frame_closes_only_that_session() {
    let server = start_server(test_config()).await;
    // A valid ping, then bytes whose first two read as a size of 2 (under the header).
    let mut bytes = protocol::frame(&C2sPing {
        seq: 1,
        client_time_us: 1,
        ..Default::default()
    })
    .unwrap()
    .to_vec();
    bytes.extend_from_slice(&[0x02, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x13, 0x37]);
    bad_input_closes_only_the_offender(&server, &bytes).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undersized_frame_closes_only_that_session() {
    let server = start_server(test_config()).await;
    bad_input_closes_only_the_offender(&server, &[0x03, 0x00, 0xd1, 0x07]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_size_frame_closes_only_that_session() {
    let server = start_server(test_config()).await;
    bad_input_closes_only_the_offender(&server, &[0x00, 0x00]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_only_that_session() {
    let mut config = test_config();
    config.server.max_packet_size = 1024;
    config.world.max_chat_len = 512;
    let server = start_server(config).await;
    // A well-formed chat frame of 1025 bytes: one byte over max_packet_size.
    let chat = C2sChat {
        room: "calm".into(),
        content: String::new(),
        sent_at_us: 0,
    };
    let base = prost::Message::encoded_len(&chat) + protocol::HEADER_LEN;
    let mut content_len = 1025 - base - 2;
    let frame = loop {
        let chat = C2sChat {
            content: "z".repeat(content_len),
            ..chat.clone()
        };
        let frame = protocol::frame(&chat).unwrap();
        match frame.len() {
            1025 => break frame,
            n if n < 1025 => content_len += 1,
            _ => content_len -= 1,
        }
    };
    bad_input_closes_only_the_offender(&server, &frame).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_of_exactly_max_packet_size_is_accepted() {
    let mut config = test_config();
    config.server.max_packet_size = 1024;
    config.world.max_chat_len = 1023;
    let server = start_server(config).await;
    let mut alice = server.member("alice", "calm").await;
    let mut content = "q".repeat(900);
    let frame = loop {
        let frame = protocol::frame(&C2sChat {
            room: "calm".into(),
            content: content.clone(),
            sent_at_us: 0,
        })
        .unwrap();
        if frame.len() == 1024 {
            break frame;
        }
        assert!(frame.len() < 1024);
        content.push('q');
    };
    alice.send_raw(&frame).await;
    let chat = alice.expect::<S2cChat>().await;
    assert_eq!(chat.content, content);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_split_into_single_bytes_is_reassembled() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "calm").await;
    let mut frames = BytesMut::new();
    protocol::encode_frame(
        &C2sChat {
            room: "calm".into(),
            content: "one byte at a time".into(),
            sent_at_us: 77,
        },
        &mut frames,
    )
    .unwrap();
    protocol::encode_frame(
        &C2sPing {
            seq: 5,
            client_time_us: 6,
            ..Default::default()
        },
        &mut frames,
    )
    .unwrap();
    for byte in frames.iter() {
        alice.send_raw(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let chat = alice.expect::<S2cChat>().await;
    assert_eq!(
        (chat.content.as_str(), chat.sent_at_us),
        ("one byte at a time", 77)
    );
    match alice.recv().await {
        S2cMessage::S2cPong(p) => assert_eq!((p.seq, p.client_time_us), (5, 6)),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_is_disconnected_and_the_others_keep_chatting() {
    let mut config = test_config();
    config.net.max_outbound_bytes = 16 * 1024;
    config.world.max_chat_len = 1000;
    // The sender talks far above the request rate limit; this test is about the reader.
    config.net.max_requests_per_sec = 0;
    let server = start_server(config).await;

    let mut sender = server.member("sender", "busy").await;
    let mut observer = server.member("observer", "busy").await;
    // The slow one reads its welcome, login and join, then never reads again. A small receive
    // buffer makes the server's writes to it back up after little data.
    let mut slow = TestClient::connect_with_recv_buffer(server.addr, 4096).await;
    slow.login_guest("slow").await;
    slow.join("busy").await;
    for member in [&mut sender, &mut observer] {
        member.await_presence("slow").await;
    }

    // The observer reads everything, counting the sender's lines, until it sees the slow one go.
    let watching = tokio::spawn(async move {
        let mut lines = 0u64;
        loop {
            match observer.recv().await {
                S2cMessage::S2cChat(c) if c.from == "sender" => lines += 1,
                S2cMessage::S2cRoomPresence(p) if p.username == "slow" && !p.joined => {
                    return (observer, lines)
                }
                other => panic!("observer got {other:?}"),
            }
        }
    });

    // The sender talks in rounds of 8 lines of 1000 bytes (8 KB a round, under the 16 KiB
    // bound for the readers) and reads its own echo of each round before the next.
    let content = "s".repeat(1000);
    let round: Vec<C2sChat> = (0..8)
        .map(|_| C2sChat {
            room: "busy".into(),
            content: content.clone(),
            sent_at_us: 1,
        })
        .collect();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut slow_gone = false;
    while !slow_gone {
        assert!(
            started.elapsed() < Duration::from_secs(20) && sent < 40_000,
            "the client that does not read is still in the room after {sent} lines ({} MB) in {:?}",
            sent * 1000 / 1_000_000,
            started.elapsed()
        );
        sender.send_all(&round).await;
        sent += round.len() as u64;
        let mut echoes = 0;
        while echoes < round.len() {
            match sender.recv().await {
                S2cMessage::S2cChat(c) if c.from == "sender" => echoes += 1,
                S2cMessage::S2cRoomPresence(p) if p.username == "slow" && !p.joined => {
                    slow_gone = true
                }
                other => panic!("sender got {other:?}"),
            }
        }
    }

    let (mut observer, observed) = tokio::time::timeout(common::RECV_TIMEOUT, watching)
        .await
        .expect("the observer did not see the slow client leave")
        .expect("observer task");
    assert!(
        observed > 0 && observed <= sent,
        "observed {observed} of {sent}"
    );
    // Every line sent before the slow one was cut reached the observer; the rest follow.
    sender.say("busy", "after the slow one", 2).await;
    observer
        .expect_chat("busy", "sender", "after the slow one")
        .await;
    sender
        .expect_chat("busy", "sender", "after the slow one")
        .await;

    // The server let go of the session: the room counts two members.
    assert_eq!(observer.member_count("busy").await, Some(2));

    // The slow client finds its connection ended once it reads what the kernel holds.
    let held = slow.expect_closed().await;
    assert!(
        (held.len() as u64) < sent,
        "the slow client got all {sent} lines: it was never cut off"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_floods_pings_without_reading_does_not_starve_another_client() {
    let mut config = test_config();
    // Without a rate limit, only the inbound credit holds the flood back.
    config.net.max_requests_per_sec = 0;
    let server = start_server(config).await;
    let mut flooder = server.guest("flooder").await;
    let mut calm = server.member("calm", "lobby").await;

    // 100 000 pings, written in chunks of 1000, never reading the pongs.
    const CHUNK: usize = 1000;
    const CHUNKS: usize = 100;
    let mut chunk = BytesMut::new();
    for seq in 0..CHUNK as u32 {
        protocol::encode_frame(
            &C2sPing {
                seq,
                client_time_us: 1,
                ..Default::default()
            },
            &mut chunk,
        )
        .unwrap();
    }
    let chunk = chunk.freeze();
    let written = Arc::new(AtomicUsize::new(0));
    let stream_written = written.clone();
    let flood = tokio::spawn(async move {
        let stream = flooder.stream_mut();
        for _ in 0..CHUNKS {
            if stream.write_all(&chunk).await.is_err() {
                break; // cut off: fine
            }
            stream_written.fetch_add(CHUNK, Ordering::Relaxed);
        }
        flooder
    });

    // Wait until the flood is under way.
    let deadline = Instant::now() + common::RECV_TIMEOUT;
    while written.load(Ordering::Relaxed) < 10 * CHUNK {
        assert!(Instant::now() < deadline, "the flood did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut worst = Duration::ZERO;
    for seq in 0..30 {
        let started = Instant::now();
        calm.ping(seq).await;
        worst = worst.max(started.elapsed());
        calm.say("lobby", "still responsive", seq as u64).await;
        calm.expect_chat("lobby", "calm", "still responsive").await;
    }
    assert!(
        worst < Duration::from_secs(1),
        "a ping round trip took {worst:?} while another client flooded"
    );
    flood.abort();
    calm.ping_next(999).await;
    server.shutdown().await;
}

/// 450 pings in one burst against the default limit (200 a second, bursts of 400): the excess
/// is dropped, the first drop is answered RATE_LIMITED, and the session stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_over_the_rate_limit_is_answered_rate_limited_once_and_the_session_stays() {
    let mut config = test_config();
    config.net.max_requests_per_sec = 200;
    let server = start_server(config).await;
    let mut client = server.client().await;
    let pings: Vec<C2sPing> = (0..450)
        .map(|seq| C2sPing {
            seq,
            client_time_us: 0,
            ..Default::default()
        })
        .collect();
    client.send_all(&pings).await;
    // Give the bucket time to refill, then a sentinel ping marks the end of the answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .send(&C2sPing {
            seq: 10_000,
            client_time_us: 0,
            ..Default::default()
        })
        .await;
    let mut pongs = Vec::new();
    let mut errors = Vec::new();
    loop {
        match client.recv().await {
            S2cMessage::S2cPong(p) if p.seq == 10_000 => break,
            S2cMessage::S2cPong(p) => pongs.push(p.seq),
            S2cMessage::S2cError(e) => errors.push(e),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        pongs.len() >= 400 && pongs.len() < 450,
        "{} of 450 pings answered: the burst of 400 should pass and the rest be dropped",
        pongs.len()
    );
    assert!(pongs.windows(2).all(|w| w[0] < w[1]), "pongs out of order");
    assert_eq!(errors.len(), 1, "one RATE_LIMITED per second: {errors:?}");
    assert_eq!(
        errors[0].code(),
        protocol::ErrorCode::RateLimited,
        "{errors:?}"
    );
    assert_eq!(errors[0].request_id, 2001, "{errors:?}");
    client.ping_next(1).await;
    server.shutdown().await;
}

/// A client that keeps sending at far more than twice its limit is disconnected, after its
/// RATE_LIMITED; another client is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_floods_far_above_the_rate_limit_is_disconnected_alone() {
    let mut config = test_config();
    config.net.max_requests_per_sec = 200;
    let server = start_server(config).await;
    let mut calm = server.member("calm", "lobby").await;
    let mut flooder = server.member("flooder", "lobby").await;
    calm.recv_until(|m| matches!(m, S2cMessage::S2cRoomPresence(_)))
        .await;

    let mut chunk = BytesMut::new();
    for seq in 0..1000 {
        protocol::encode_frame(
            &C2sPing {
                seq,
                client_time_us: 0,
                ..Default::default()
            },
            &mut chunk,
        )
        .unwrap();
    }
    // 100 000 pings as fast as the socket takes them. Once the server cuts the connection
    // a write fails (or the rest sits in kernel buffers): either way the writing ends.
    for _ in 0..100 {
        let write = flooder.stream_mut().write_all(&chunk);
        match tokio::time::timeout(common::RECV_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => panic!("the server neither read the flood nor closed the connection"),
        }
    }
    let frames = flooder.expect_closed().await;
    let pongs = frames
        .iter()
        .filter(|m| matches!(m, S2cMessage::S2cPong(_)))
        .count();
    assert!(pongs < 100_000, "every ping of the flood was answered");
    for frame in &frames {
        match frame {
            S2cMessage::S2cPong(_) => {}
            S2cMessage::S2cError(e) => {
                assert_eq!(e.code(), protocol::ErrorCode::RateLimited, "{e:?}")
            }
            other => panic!("the flooder got {other:?}"),
        }
    }

    // The calm member saw the flooder leave and is served as ever.
    let (presence, skipped) = calm
        .recv_until_with_skipped(|m| matches!(m, S2cMessage::S2cRoomPresence(_)))
        .await;
    assert!(skipped.is_empty(), "{skipped:?}");
    match presence {
        S2cMessage::S2cRoomPresence(p) => {
            assert_eq!((p.username.as_str(), p.joined), ("flooder", false))
        }
        _ => unreachable!(),
    }
    calm.ping_next(1).await;
    calm.say("lobby", "quiet again", 1).await;
    calm.expect_chat("lobby", "calm", "quiet again").await;
    server.shutdown().await;
}

/// PROTOCOL.md rule 8 disconnects "a client that stops reading and lets its outbound queue
/// pass the configured bound". A client that reads everything at once has nothing queued; one
/// busy tick that sends it more than the bound in one batch does not make it slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_that_keeps_up_is_not_disconnected_by_one_tick_larger_than_max_outbound_bytes() {
    let mut config = test_config();
    config.net.max_outbound_bytes = 16 * 1024;
    config.world.max_chat_len = 1000;
    let server = start_server(config).await;
    let mut sender = server.member("sender", "busy").await;
    let mut reader = server.member("reader", "busy").await;
    sender
        .recv_until(|m| matches!(m, S2cMessage::S2cRoomPresence(_)))
        .await;
    // 24 lines of 1000 bytes in one write: about 25 KB for every member in one or two ticks,
    // while both members read as fast as they can.
    let content = "k".repeat(1000);
    let lines: Vec<C2sChat> = (0..24)
        .map(|i| C2sChat {
            room: "busy".into(),
            content: content.clone(),
            sent_at_us: i,
        })
        .collect();
    sender.send_all(&lines).await;
    for member in [&mut reader, &mut sender] {
        for i in 0..24 {
            let chat = member.expect::<S2cChat>().await;
            assert_eq!(chat.sent_at_us, i, "{} lost line {i}", member.name);
        }
    }
    reader.ping_next(1).await;
    sender.ping_next(1).await;
    server.shutdown().await;
}
