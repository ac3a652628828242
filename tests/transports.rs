//! What carries the frames: TCP (the game port), WebSocket (the web port, beside the page),
//! TLS and WebSocket over TLS (the TLS port, told apart by ALPN); the certificate's checks and
//! reload; and every bad input of these layers, each answered with a clear close or error
//! that touches nobody but its sender.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::certs::{self, TestCert};
use common::{
    free_port, http_raw, start_server, test_config, wait_for_port, with_web, ws_frame, TestClient,
    TestServer,
};
use config::ServerConfig;
use net::rustls;
use protocol::world::{C2sLogin, C2sPing, S2cError, S2cWelcome};
use protocol::{ErrorCode, S2cMessage};
use tokio::net::TcpStream;

/// A server with a TLS port on a free port of 127.0.0.1 and a fresh certificate; the
/// certificate's directory; the TLS address.
async fn tls_server(mut config: ServerConfig) -> (TestServer, SocketAddr, TestCert, PathBuf) {
    let dir = common::fresh_dir();
    let cert = certs::self_signed(&dir, "server");
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.tls.listen = tls.to_string();
    config.tls.cert = cert.cert.clone();
    config.tls.key = cert.key.clone();
    let server = start_server(config).await;
    wait_for_port(tls).await;
    (server, tls, cert, dir)
}

/// A server of `config` with a web port; the web port's address.
async fn web_server(mut config: ServerConfig) -> (TestServer, SocketAddr) {
    let web = with_web(&mut config);
    (start_server(config).await, web)
}

/// The first session of a server of `max_sessions = 1`, once the connection that found its
/// TLS or web port open has left.
async fn first_in(server: &TestServer) -> TestClient {
    let deadline = Instant::now() + common::RECV_TIMEOUT;
    loop {
        let mut client = TestClient::connect_raw(server.addr).await;
        match client.recv().await {
            S2cMessage::S2cWelcome(welcome) => {
                client.welcome = welcome;
                return client;
            }
            other => assert!(
                Instant::now() < deadline,
                "no room for a session: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_tcp_a_tls_a_websocket_and_a_wss_client_chat_in_one_room() {
    let mut config = test_config();
    let web = with_web(&mut config);
    let (server, tls, cert, _dir) = tls_server(config).await;
    let mut clients = vec![
        TestClient::connect(server.addr).await,
        TestClient::connect_tls(tls, &cert.cert).await,
        TestClient::connect_ws(web).await,
        TestClient::connect_wss(tls, &cert.cert).await,
    ];
    let names = ["tcp-ann", "tls-bob", "ws-cyd", "wss-dan"];
    for (client, name) in clients.iter_mut().zip(names) {
        assert!(client.session_id() > 0);
        client.login_guest(name).await;
        client.join("lobby").await;
    }
    // Wait until everyone has seen everyone join, then each says one line.
    for (i, client) in clients.iter_mut().enumerate() {
        for later in &names[i + 1..] {
            client.await_presence(later).await;
        }
    }
    for (client, name) in clients.iter_mut().zip(names) {
        client.say("lobby", &format!("hello from {name}"), 1).await;
    }
    for client in &mut clients {
        for name in names {
            client
                .expect_chat("lobby", name, &format!("hello from {name}"))
                .await;
        }
    }
    // A whisper from the WebSocket client to the TLS one.
    clients[2]
        .send(&protocol::world::C2sWhisper {
            to: "tls-bob".into(),
            content: "psst".into(),
            sent_at_us: 1,
        })
        .await;
    let whisper = clients[1]
        .recv_until(|m| matches!(m, S2cMessage::S2cWhisper(_)))
        .await;
    assert!(
        matches!(whisper, S2cMessage::S2cWhisper(w) if w.from == "ws-cyd" && w.content == "psst")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn each_port_serves_its_own_and_tells_the_others_where_to_go() {
    let (server, web) = web_server(test_config()).await;
    // The game port speaks first, at once.
    let mut frames = TestClient::connect(server.addr).await;
    assert_eq!(frames.welcome.server_name, "e2e-world");
    // The web port serves the page, its script, and nothing else but WebSocket.
    let page = http_raw(web, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(
        page.body.contains("<script src=\"/app.js\"></script>"),
        "{}",
        page.body
    );
    let script = http_raw(web, b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(script.status, 200);
    assert!(script.content_type.starts_with("text/javascript"));
    assert!(script.body.starts_with(protocol::MESSAGES_JS));
    // A client of frames on the web port is told where frames are.
    let mut lost = TestClient::connect_raw(web).await;
    lost.send(&C2sLogin {
        username: "lost".into(),
        password: String::new(),
        ..Default::default()
    })
    .await;
    let seen = lost.expect_closed().await;
    let [S2cMessage::S2cError(error)] = seen.as_slice() else {
        panic!("expected one S2C_Error, got {seen:?}");
    };
    assert_eq!(error.code(), ErrorCode::BadRequest);
    assert!(
        error.reason.contains(&server.addr.to_string()),
        "{}",
        error.reason
    );
    frames.ping(1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn tls_1_2_is_refused_unless_allowed() {
    for allow in [false, true] {
        let mut config = test_config();
        config.tls.allow_tls12 = allow;
        let (server, tls, cert, _dir) = tls_server(config).await;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(cert.der.clone()))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(net::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let stream = TcpStream::connect(tls).await.unwrap();
        let handshake =
            common::tls_handshake(stream, &cert.cert, Some(std::sync::Arc::new(client))).await;
        match (allow, handshake) {
            (false, Err(error)) => assert!(
                error.to_string().contains("ProtocolVersion")
                    || error.to_string().contains("protocol version"),
                "{error}"
            ),
            (true, Ok(_)) => {}
            (allow, other) => panic!("allow_tls12 = {allow}: {:?}", other.map(|_| ())),
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_certificate_that_cannot_serve_stops_the_server_naming_the_key() {
    let dir = common::fresh_dir();
    let good = certs::self_signed(&dir, "good");
    let other = certs::self_signed(&dir, "other");
    let now = time::OffsetDateTime::now_utc();
    let expired = certs::with_validity(
        &dir,
        "expired",
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    let early = certs::with_validity(
        &dir,
        "early",
        now + time::Duration::days(1),
        now + time::Duration::days(30),
    );
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = dir.join("missing.pem");
    let cases = [
        (
            missing.clone(),
            good.key.clone(),
            "tls.cert",
            "cannot read it: No such file",
        ),
        (
            good.cert.clone(),
            missing,
            "tls.key",
            "cannot read it: No such file",
        ),
        (
            empty.clone(),
            good.key.clone(),
            "tls.cert",
            "no certificate in it",
        ),
        (good.cert.clone(), empty, "tls.key", "no private key in it"),
        (
            good.cert.clone(),
            other.key.clone(),
            "tls.key",
            "the key does not match the certificate",
        ),
        (
            expired.cert,
            expired.key,
            "tls.cert",
            "the certificate expired on ",
        ),
        (
            early.cert,
            early.key,
            "tls.cert",
            "the certificate is not valid before ",
        ),
    ];
    for (cert, key, named, why) in cases {
        let mut config = test_config();
        config.tls.listen = format!("127.0.0.1:{}", free_port());
        config.tls.cert = cert.clone();
        config.tls.key = key.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = world_server::run(listener, config, std::future::pending())
            .await
            .expect_err("the server must not start");
        let text = error.to_string();
        let path = if named == "tls.cert" { &cert } else { &key };
        assert!(
            text.starts_with(&format!("{named} {path:?}: ")) && text.contains(why),
            "{text}"
        );
        assert_eq!(error.exit_code(), 2, "{text}");
        assert!(!text.contains('\n'));
    }
}

/// The certificate a TLS handshake with `addr` presents.
async fn presented(addr: SocketAddr) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let trust_any = net::tls::client_config(&net::tls::Trust::Insecure).unwrap();
    let tls = common::tls_handshake(stream, std::path::Path::new(""), Some(trust_any))
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_new_certificate_serves_new_handshakes_while_sessions_keep_theirs() {
    let mut config = test_config();
    config.tls.reload_secs = 1;
    let (server, tls, first, dir) = tls_server(config).await;
    let mut old = TestClient::connect_tls(tls, &first.cert).await;
    old.login_guest("old-session").await;
    assert_eq!(presented(tls).await, first.der);

    // A bad pair in place of the files: refused, the first stays.
    let other = certs::self_signed(&dir, "other");
    std::fs::copy(&other.key, &first.key).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        presented(tls).await,
        first.der,
        "a key that does not match is not taken"
    );

    // A good new pair: taken within a check or two.
    let second = certs::self_signed(&dir, "second");
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    let deadline = Instant::now() + common::RECV_TIMEOUT;
    while presented(tls).await != second.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The session made with the first certificate goes on.
    old.ping(7).await;
    old.join("after-reload").await;
    let mut new = TestClient::connect_tls(tls, &second.cert).await;
    new.login_guest("new-session").await;
    server.shutdown().await;
}

#[tokio::test]
async fn plain_bytes_on_the_tls_port_are_told_where_to_go() {
    let (server, tls, _cert, _dir) = tls_server(test_config()).await;
    // A client of frames: an error frame saying so, then the close.
    let mut frames = TestClient::connect_raw(tls).await;
    frames
        .send(&C2sLogin {
            username: "lost".into(),
            password: String::new(),
            ..Default::default()
        })
        .await;
    let seen = frames.expect_closed().await;
    let error = match seen.as_slice() {
        [S2cMessage::S2cError(error)] => error.clone(),
        other => panic!("expected one S2C_Error, got {other:?}"),
    };
    assert_eq!(error.code(), ErrorCode::BadRequest);
    assert!(
        error.reason.contains("this port speaks TLS"),
        "{}",
        error.reason
    );
    assert!(
        error.reason.contains(&server.addr.to_string()),
        "{}",
        error.reason
    );
    // A browser's plain HTTP: a 400 saying to use https.
    let answer = http_raw(tls, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("use https://"), "{}", answer.body);
    // The port still serves TLS.
    let mut fine = TestClient::connect_tls(tls, &_cert.cert).await;
    fine.ping(1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_tls_client_on_a_plain_port_fails_at_once() {
    let mut config = test_config();
    let web = with_web(&mut config);
    let (server, _tls, cert, _dir) = tls_server(config).await;
    // The web port answers a ClientHello with an alert.
    let stream = TcpStream::connect(web).await.unwrap();
    let error = common::tls_handshake(stream, &cert.cert, None)
        .await
        .map(|_| ())
        .expect_err("no TLS on the web port");
    assert!(
        error.to_string().contains("HandshakeFailure"),
        "a handshake_failure alert, got: {error}"
    );
    // The game port speaks first: the client reads the welcome as a broken record, and the
    // server closes as soon as it sees a ClientHello.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let handshake = common::tls_handshake(stream, &cert.cert, None);
    let error = tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .expect("the TLS client fails at once")
        .map(|_| ())
        .expect_err("no TLS on the game port");
    assert!(!error.to_string().is_empty());
    let mut fine = server.client().await;
    fine.ping(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_never_finish_are_closed_and_hold_only_their_share() {
    let mut config = test_config();
    config.net.handshake_timeout_secs = 1;
    config.limits.exempt_addresses = Vec::new();
    config.limits.max_unauthenticated_per_address = 4;
    let web = with_web(&mut config);
    let (server, tls, cert, _dir) = tls_server(config).await;
    // From 20 addresses, 6 connections each: a ClientHello that stops half way on the TLS
    // port, and an upgrade request that stops half way on the web port.
    let mut stalled = Vec::new();
    for host in 2..22u8 {
        let source = std::net::IpAddr::from([127, 0, 0, host]);
        for i in 0..6 {
            let port = if i % 2 == 0 { tls } else { web };
            let mut client = TestClient::connect_raw_from(port, source).await;
            let start: &[u8] = if i % 2 == 0 {
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]
            } else {
                b"GET /ws HTTP/1.1\r\nHost: x\r\n"
            };
            client.send_raw(start).await;
            stalled.push(client);
        }
    }
    // Meanwhile a client of each transport from another address is served.
    let mut tcp = TestClient::connect_from(server.addr, [127, 0, 0, 99].into()).await;
    tcp.login_guest("patient").await;
    let mut wss = TestClient::connect_wss(tls, &cert.cert).await;
    wss.login_guest("secure").await;
    // Each address held 4 at most: the 5th and 6th were refused at once, the others closed
    // at the handshake deadline.
    let started = Instant::now();
    for client in &mut stalled {
        client.expect_closed_within(Duration::from_secs(5)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = server.shutdown().await;
    assert!(
        stats.refused_per_address >= 40,
        "two of six per address refused: {}",
        stats.refused_per_address
    );
    assert!(
        stats
            .disconnects
            .get("handshake_failed")
            .copied()
            .unwrap_or(0)
            >= 60,
        "{:?}",
        stats.disconnects
    );
}

#[tokio::test]
async fn bad_upgrades_and_other_requests_get_http_errors() {
    let mut config = test_config();
    config.web.allowed_origins = vec!["https://game.example".into()];
    let (server, addr) = web_server(config).await;
    let upgrade = |extra: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
        )
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases: Vec<(String, u16, &str)> = vec![
        (
            upgrade("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n"),
            400,
            "is not 16 bytes",
        ),
        (
            upgrade(&format!("{key}Sec-WebSocket-Version: 8\r\n")),
            426,
            "13 is supported",
        ),
        (
            upgrade(&format!(
                "{key}Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n"
            )),
            403,
            "allowed_origins",
        ),
        (
            format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
            426,
            "WebSocket upgrades",
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
            405,
            "only GET",
        ),
        (
            format!("GET /nothing HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
            404,
            "no such page",
        ),
        ("GET / HTTP/9.9\r\n\r\n".to_string(), 400, "not HTTP/1.x"),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)),
            431,
            "over 8 KiB",
        ),
    ];
    for (request, status, why) in cases {
        let answer = http_raw(addr, request.as_bytes())
            .await
            .unwrap_or_else(|| panic!("no answer to {request:?}"));
        assert_eq!(answer.status, status, "{request:?}: {}", answer.body);
        assert!(answer.body.contains(why), "{request:?}: {}", answer.body);
    }
    // The listed origin, and the server's own, are let in.
    for origin in ["https://game.example".to_string(), format!("http://{addr}")] {
        let mut client = TestClient::connect_raw(addr).await;
        let (status, head) = client
            .ws_upgrade(&addr.to_string(), "/ws", Some(&origin))
            .await;
        assert_eq!(status, 101, "{origin}: {head}");
        client.expect::<S2cWelcome>().await;
    }
    let mut fine = server.client().await;
    fine.ping(1).await;
    let stats = server.shutdown().await;
    assert_eq!(
        stats.disconnects.get("http").copied(),
        Some(8),
        "{:?}",
        stats.disconnects
    );
}

/// A WebSocket client logged in as `name`.
async fn ws_guest(server: &TestServer, name: &str) -> TestClient {
    let mut client = TestClient::connect_ws(server.web.expect("a web port")).await;
    client.login_guest(name).await;
    client
}

/// Reads until the server's close frame, which must carry `code`.
async fn expect_ws_close(client: &mut TestClient, code: u16) -> String {
    client.expect_closed().await;
    let (got, reason) = client
        .ws
        .as_ref()
        .and_then(|ws| ws.close.clone())
        .expect("a close frame before the end");
    assert_eq!(got, code, "close reason: {reason}");
    reason
}

#[tokio::test]
async fn websocket_protocol_errors_close_with_their_codes_and_touch_nobody_else() {
    let (server, _) = web_server(test_config()).await;
    let mut bystander = ws_guest(&server, "bystander").await;
    bystander.join("calm").await;

    let mut text = ws_guest(&server, "texter").await;
    text.send_ws_frame(true, 1, b"hello", true).await;
    let reason = expect_ws_close(&mut text, 1003).await;
    assert!(reason.contains("text message"), "{reason}");

    let mut split = ws_guest(&server, "splitter").await;
    let frame = common::raw_frame(C2sPing_ID, &[]);
    split.send_ws_frame(true, 2, &frame[..3], true).await;
    let reason = expect_ws_close(&mut split, 1007).await;
    assert!(reason.contains("whole frames"), "{reason}");

    // 10 MB announced: refused from the header, before the bytes come.
    let mut huge = ws_guest(&server, "huge").await;
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(10u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    huge.send_bytes(&header).await.unwrap();
    let reason = expect_ws_close(&mut huge, 1009).await;
    assert!(reason.contains("over the 65536-byte limit"), "{reason}");

    // Fragments that never end: cut at the limit.
    let mut endless = ws_guest(&server, "endless").await;
    endless.send_ws_frame(false, 2, &[0; 4000], true).await;
    for _ in 0..40 {
        let fragment = ws_frame(false, 0, &[0; 4000], true);
        if endless.send_bytes(&fragment).await.is_err() {
            break; // closed at the limit
        }
    }
    expect_ws_close(&mut endless, 1009).await;

    let mut unmasked = ws_guest(&server, "unmasked").await;
    unmasked.send_ws_frame(true, 2, &frame, false).await;
    expect_ws_close(&mut unmasked, 1002).await;

    // A frame split across two messages is not put together: the first message is bad.
    let mut halves = ws_guest(&server, "halves").await;
    halves.send_ws_frame(true, 2, &frame[..2], true).await;
    halves.send_ws_frame(true, 2, &frame[2..], true).await;
    expect_ws_close(&mut halves, 1007).await;

    bystander.say("calm", "still here", 1).await;
    bystander
        .expect_chat("calm", "bystander", "still here")
        .await;
    let stats = server.shutdown().await;
    assert_eq!(
        stats
            .disconnects
            .get("websocket_error")
            .copied()
            .unwrap_or(0),
        6,
        "{:?}",
        stats.disconnects
    );
}

/// The id of C2S_Ping.
#[allow(non_upper_case_globals)]
const C2sPing_ID: u16 = <C2sPing as protocol::MessageType>::ID;

#[tokio::test]
async fn websocket_pings_get_pongs_a_close_gets_a_close_and_messages_carry_several_frames() {
    let (server, web) = web_server(test_config()).await;
    let mut client = TestClient::connect_ws(web).await;
    // Login and join in one message; a ping in two fragments with a WebSocket ping between.
    let mut both = common::raw_frame(
        <C2sLogin as protocol::MessageType>::ID,
        &prost::Message::encode_to_vec(&C2sLogin {
            username: "several".into(),
            password: String::new(),
            ..Default::default()
        }),
    );
    both.extend(common::raw_frame(
        <protocol::world::C2sRoomJoin as protocol::MessageType>::ID,
        &prost::Message::encode_to_vec(&protocol::world::C2sRoomJoin {
            room: "frames".into(),
            ..Default::default()
        }),
    ));
    client.send_raw(&both).await;
    client.expect::<protocol::world::S2cAuthResult>().await;
    client.expect::<protocol::world::S2cRoomJoined>().await;
    let ping = common::raw_frame(
        C2sPing_ID,
        &prost::Message::encode_to_vec(&C2sPing {
            seq: 5,
            client_time_us: 0,
            ..Default::default()
        }),
    );
    client.send_ws_frame(false, 2, &ping[..4], true).await;
    client.send_ws_frame(true, 9, b"are you there", true).await;
    client.send_ws_frame(true, 0, &ping[4..], true).await;
    let pong = client.expect::<protocol::world::S2cPong>().await;
    assert_eq!(pong.seq, 5);
    // The WebSocket pong came back with the ping's payload (before the frame, or after).
    if client.ws.as_ref().unwrap().pongs.is_empty() {
        client.expect_silence(Duration::from_millis(300)).await;
    }
    assert_eq!(
        client.ws.as_ref().unwrap().pongs,
        [b"are you there".to_vec()]
    );
    // A close from the client is answered with a close, and the connection ends.
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    client.send_ws_frame(true, 8, &close, true).await;
    expect_ws_close(&mut client, 1000).await;
    let stats = server.shutdown().await;
    assert!(stats.disconnects.get("peer_closed").copied().unwrap_or(0) >= 1);
}

#[tokio::test]
async fn a_full_server_says_so_over_websocket() {
    let mut config = test_config();
    config.server.max_sessions = 1;
    let (server, web) = web_server(config).await;
    let mut first = first_in(&server).await;
    let mut second = TestClient::connect_raw(web).await;
    let (status, _) = second.ws_upgrade(&web.to_string(), "/ws", None).await;
    assert_eq!(status, 101);
    let error = second.expect::<S2cError>().await;
    assert_eq!(error.code(), ErrorCode::ServerFull);
    expect_ws_close(&mut second, 1008).await;
    first.ping(1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_tls_client_can_be_refused_in_words_too() {
    let mut config = test_config();
    config.server.max_sessions = 1;
    let (server, tls, cert, _dir) = tls_server(config).await;
    let _first = first_in(&server).await;
    let mut second = TestClient::connect_tls_raw(tls, &cert.cert, None).await;
    let error = second.expect::<S2cError>().await;
    assert_eq!(error.code(), ErrorCode::ServerFull);
    second.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_over_websocket_keeps_order_and_closes_with_a_reason() {
    let mut config = test_config();
    config.limits.login_deadline_secs = 1;
    let (server, web) = web_server(config).await;
    let mut late = TestClient::connect_ws(web).await;
    let error = late.expect::<S2cError>().await;
    assert_eq!(error.code(), ErrorCode::LoginTimeout);
    let reason = expect_ws_close(&mut late, 1008).await;
    assert!(reason.contains("login"), "{reason}");
    // Server shutdown: 1001.
    let mut stays = ws_guest(&server, "stays").await;
    let stop = tokio::spawn(server.shutdown());
    expect_ws_close(&mut stays, 1001).await;
    stop.await.unwrap();
}

#[tokio::test]
async fn the_game_port_closes_at_once_on_http_or_a_client_hello() {
    let server = start_server(test_config()).await;
    // A frame whose first bytes are capital letters (16705 bytes): too large, a protocol
    // error, as it always was.
    let mut big = TestClient::connect_raw(server.addr).await;
    big.send_raw(b"AAA\x07").await;
    big.expect_closed().await;
    // A ClientHello: closed at once, not waited on as a frame of 790 bytes.
    let mut hello = TestClient::connect_raw(server.addr).await;
    hello
        .send_raw(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 0, 0])
        .await;
    hello.expect_closed_within(Duration::from_secs(5)).await;
    drop(hello);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = server.shutdown().await;
    assert_eq!(
        stats.disconnects.get("protocol_error").copied(),
        Some(2),
        "{:?}",
        stats.disconnects
    );
}
