//! Attacks on the server's limits, end to end, from many connections and many client addresses
//! at once (every address of 127.0.0.0/8 reaches the server as a host of its own).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{start_server, test_config, TestClient, RECV_TIMEOUT};
use config::ServerConfig;
use protocol::world::{C2sLogin, C2sPing, C2sRegister, C2sResume, S2cAuthResult};
use protocol::{ErrorCode, S2cMessage};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A test server config where loopback is not exempt, so that the per-address limits apply to
/// the addresses the tests connect from.
fn unexempt() -> ServerConfig {
    let mut config = test_config();
    config.limits.exempt_addresses.clear();
    config
}

/// [`unexempt`], with no limit on connections per address: for attacks on the other limits
/// from many connections of one host.
fn unlimited_connections() -> ServerConfig {
    let mut config = unexempt();
    config.limits.max_unauthenticated_per_address = 0;
    config.limits.max_sessions_per_address = 0;
    config
}

/// `n` clients connected from `source`, each past its welcome.
async fn connect_many(addr: std::net::SocketAddr, source: IpAddr, n: usize) -> Vec<TestClient> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(TestClient::connect_from(addr, source).await);
    }
    clients
}

fn login(name: &str, password: &str) -> C2sLogin {
    C2sLogin {
        username: name.into(),
        password: password.into(),
        ..Default::default()
    }
}

/// The answer to a login: `Ok` for S2C_AuthResult, the error code otherwise.
async fn login_answer(client: &mut TestClient) -> Result<S2cAuthResult, ErrorCode> {
    match client.recv().await {
        S2cMessage::S2cAuthResult(r) => Ok(r),
        S2cMessage::S2cError(e) => Err(e.code()),
        other => panic!("expected a login answer, got {other:?}"),
    }
}

async fn register_from(addr: std::net::SocketAddr, source: IpAddr, name: &str) -> TestClient {
    let mut client = TestClient::connect_from(addr, source).await;
    let result = client.register(name, "correct horse").await;
    assert_eq!(result.username, name);
    client
}

/// Connects from `source` as soon as the server has a slot for it again: it learns of closes
/// on its own time, hence the bounded retry.
async fn connect_once_freed(addr: std::net::SocketAddr, source: IpAddr) -> TestClient {
    let deadline = Instant::now() + RECV_TIMEOUT;
    loop {
        let mut next = TestClient::connect_raw_from(addr, source).await;
        match next.recv().await {
            S2cMessage::S2cWelcome(welcome) => {
                next.welcome = welcome;
                return next;
            }
            S2cMessage::S2cError(e)
                if matches!(
                    e.code(),
                    ErrorCode::TooManyConnections | ErrorCode::ServerFull
                ) =>
            {
                assert!(
                    Instant::now() < deadline,
                    "no slot freed after a disconnect"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_guesses_sent_at_once_from_one_address_get_no_more_tries_than_the_limit() {
    let server = start_server(unlimited_connections()).await;
    register_from(server.addr, ip("127.0.0.2"), "bob").await;

    let mut guessers = connect_many(server.addr, ip("127.0.0.3"), 200).await;
    for (i, guesser) in guessers.iter_mut().enumerate() {
        // The 150th guess is right.
        let password = if i == 149 {
            "correct horse"
        } else {
            "guess guess"
        };
        guesser.send(&login("bob", password)).await;
    }
    let mut tried = 0;
    let mut logged_in = Vec::new();
    for (i, guesser) in guessers.iter_mut().enumerate() {
        match login_answer(guesser).await {
            Err(ErrorCode::RateLimited) => {}
            Err(ErrorCode::InvalidCredentials) => tried += 1,
            Ok(_) => {
                tried += 1;
                logged_in.push(i);
            }
            Err(other) => panic!("guess {i}: {other:?}"),
        }
    }
    assert!(tried <= 5, "{tried} of 200 guesses were checked");
    assert!(logged_in.iter().all(|&i| i == 149), "{logged_in:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out_from_another() {
    let server = start_server(unexempt()).await;
    register_from(server.addr, ip("127.0.0.4"), "bob").await;
    let mut attacker = TestClient::connect_from(server.addr, ip("127.0.0.5")).await;
    for _ in 0..5 {
        attacker.send(&login("bob", "guess guess")).await;
        assert_eq!(
            login_answer(&mut attacker).await.unwrap_err(),
            ErrorCode::InvalidCredentials
        );
    }
    attacker.send(&login("bob", "correct horse")).await;
    assert_eq!(
        login_answer(&mut attacker).await.unwrap_err(),
        ErrorCode::RateLimited,
        "the guessing address is stopped, even with the right password"
    );
    let mut owner = TestClient::connect_from(server.addr, ip("127.0.0.6")).await;
    owner.send(&login("bob", "correct horse")).await;
    let result = login_answer(&mut owner).await.expect("the owner logs in");
    assert_eq!(result.username, "bob");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resumes_from_an_address_do_not_lock_out_its_password_logins() {
    let server = start_server(unexempt()).await;
    register_from(server.addr, ip("127.0.0.7"), "carol").await;
    let mut client = TestClient::connect_from(server.addr, ip("127.0.0.8")).await;
    for _ in 0..20 {
        client
            .send(&C2sResume {
                token: "ab".repeat(32),
                ..Default::default()
            })
            .await;
        assert_eq!(
            login_answer(&mut client).await.unwrap_err(),
            ErrorCode::InvalidToken
        );
    }
    client
        .send(&C2sResume {
            token: "ab".repeat(32),
            ..Default::default()
        })
        .await;
    assert_eq!(
        login_answer(&mut client).await.unwrap_err(),
        ErrorCode::RateLimited
    );
    client.send(&login("carol", "correct horse")).await;
    assert!(login_answer(&mut client).await.is_ok());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_cannot_hold_every_slot_with_connections_that_never_log_in() {
    let mut config = unexempt();
    config.server.max_sessions = 100;
    config.limits.max_unauthenticated_per_address = 10;
    config.limits.login_deadline_secs = 1;
    let server = start_server(config).await;
    let hog = ip("127.0.0.9");

    // 60 connections at once from one host: 10 are taken, the rest told why and closed.
    let connects = (0..60).map(|_| TestClient::connect_raw_from(server.addr, hog));
    let mut raw = futures_util::future::join_all(connects).await;
    let mut taken = Vec::new();
    let mut refused = 0;
    for mut client in raw.drain(..) {
        match client.recv().await {
            S2cMessage::S2cWelcome(_) => taken.push(client),
            S2cMessage::S2cError(e) => {
                assert_eq!(e.code(), ErrorCode::TooManyConnections, "{e:?}");
                assert!(
                    e.reason.contains("max_unauthenticated_per_address"),
                    "{e:?}"
                );
                assert!(client.expect_closed().await.is_empty());
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((taken.len(), refused), (10, 50));

    // Another host is served meanwhile.
    let mut player = TestClient::connect_from(server.addr, ip("127.0.0.10")).await;
    player.login_guest("player").await;

    // Pinging does not keep a connection that never logs in: it is closed at the deadline.
    let started = Instant::now();
    for (seq, client) in taken.iter_mut().enumerate() {
        client
            .send(&C2sPing {
                seq: seq as u32,
                client_time_us: 0,
                ..Default::default()
            })
            .await;
    }
    for client in &mut taken {
        let before = client.expect_closed().await;
        assert!(
            matches!(before.last(), Some(S2cMessage::S2cError(e)) if e.code() == ErrorCode::LoginTimeout),
            "{before:?}"
        );
    }
    assert!(started.elapsed() < RECV_TIMEOUT);
    // Its slots are free again.
    let mut again = connect_once_freed(server.addr, hog).await;
    again.login_guest("hog").await;
    player.ping_next(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_max_sessions_per_address_logged_in_or_not() {
    let mut config = unexempt();
    config.limits.max_sessions_per_address = 5;
    let server = start_server(config).await;
    let host = ip("127.0.0.11");
    let mut players = Vec::new();
    for i in 0..5 {
        let mut client = TestClient::connect_from(server.addr, host).await;
        client.login_guest(&format!("player{i}")).await;
        players.push(client);
    }
    let mut sixth = TestClient::connect_raw_from(server.addr, host).await;
    let error = sixth.expect_error(ErrorCode::TooManyConnections).await;
    assert!(
        error.reason.contains("max_sessions_per_address"),
        "{error:?}"
    );
    sixth.expect_closed().await;
    // One leaves: there is room again.
    players.pop().unwrap().close().await;
    connect_once_freed(server.addr, host).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_sent_at_once_from_one_address_stop_at_the_limit() {
    let mut config = unlimited_connections();
    config.auth.max_registrations_per_address = 5;
    let server = start_server(config).await;
    let mut clients = connect_many(server.addr, ip("127.0.0.12"), 50).await;
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .send(&C2sRegister {
                username: format!("farm{i}"),
                password: "correct horse".into(),
                ..Default::default()
            })
            .await;
    }
    let mut created = 0;
    for client in &mut clients {
        match login_answer(client).await {
            Ok(_) => created += 1,
            Err(code) => assert_eq!(code, ErrorCode::RateLimited),
        }
    }
    assert_eq!(created, 5);
    // Another address registers as usual.
    register_from(server.addr, ip("127.0.0.13"), "honest").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_exempt_by_default_so_local_bots_are_not_limited() {
    let mut config = test_config();
    config.limits.max_unauthenticated_per_address = 2;
    config.auth.max_registrations_per_address = 2;
    config.auth.max_failures_per_addr = 2;
    config.auth.max_bad_resumes_per_addr = 2;
    let server = start_server(config).await;
    let bots = ip("127.0.0.14");
    let mut tokens = Vec::new();
    for i in 0..30 {
        let mut client = TestClient::connect_from(server.addr, bots).await;
        tokens.push(
            client
                .register(&format!("bot{i}"), "correct horse")
                .await
                .token,
        );
    }
    // Thirty password logins and thirty resumes at once, from the one address.
    let mut clients = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let mut by_password = TestClient::connect_from(server.addr, bots).await;
        by_password
            .send(&login(&format!("bot{i}"), "correct horse"))
            .await;
        let mut by_token = TestClient::connect_from(server.addr, bots).await;
        by_token
            .send(&C2sResume {
                token: token.clone(),
                ..Default::default()
            })
            .await;
        clients.push(by_password);
        clients.push(by_token);
    }
    for client in &mut clients {
        assert!(login_answer(client).await.is_ok());
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_filling_room_after_room_leaves_at_most_max_history_rooms_on_disk() {
    let mut config = test_config();
    config.world.max_history_rooms = 5;
    let path = config.storage.path.clone();
    let server = start_server(config).await;
    let mut filler = server.guest("filler").await;
    for i in 0..20 {
        let room = format!("fill-{i:02}");
        filler.join(&room).await;
        for n in 0..3 {
            filler.say(&room, &format!("line {n}"), n).await;
            filler
                .expect_chat(&room, "filler", &format!("line {n}"))
                .await;
        }
        filler
            .send(&protocol::world::C2sRoomLeave { room: room.clone() })
            .await;
        filler.expect::<protocol::world::S2cRoomLeft>().await;
    }
    server.shutdown_keeping_db().await;
    let mut storage = world_server::storage::SqliteStorage::open(&path, false).unwrap();
    let kept: Vec<String> = (0..20)
        .map(|i| format!("fill-{i:02}"))
        .filter(|room| {
            let lines =
                world_server::storage::Storage::log_tail(&mut storage, "rooms", room, 50).unwrap();
            !lines.is_empty()
        })
        .collect();
    assert_eq!(
        kept,
        ["fill-15", "fill-16", "fill-17", "fill-18", "fill-19"]
    );
    drop(storage);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A password login to an account under attack waits out the account's delay; a connection
/// that sends one and closes at once must leave the world once the delay is over (its slot
/// freed), not stay behind as a session without a socket that nothing ever closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_during_a_delayed_login_frees_its_slot() {
    let mut config = unexempt();
    config.limits.max_unauthenticated_per_address = 1;
    // No idle timeout: the sweep that would otherwise hide the leak for a minute.
    config.net.idle_timeout_secs = 0;
    let server = start_server(config).await;
    // Five failures make every later login to "zed" wait (delay_after_failures).
    let mut failer = TestClient::connect_from(server.addr, ip("127.0.0.20")).await;
    for _ in 0..5 {
        failer.send(&login("zed", "guess guess")).await;
        assert_eq!(
            login_answer(&mut failer).await.unwrap_err(),
            ErrorCode::InvalidCredentials
        );
    }
    let source = ip("127.0.0.21");
    let mut delayed = TestClient::connect_from(server.addr, source).await;
    delayed.send(&login("zed", "guess guess")).await;
    delayed.close().await;
    // The delay is 250 ms; connect_once_freed retries for RECV_TIMEOUT (10 s).
    let _next = connect_once_freed(server.addr, source).await;
    server.shutdown().await;
}

/// Guessing one account from many addresses is paced: of 300 guesses sent at once from 60
/// addresses (5 each, within every per-address limit), the first few are checked, a few more
/// wait their turn one spacing apart, and the rest are refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_at_one_account_sent_at_once_from_many_addresses_are_paced() {
    let mut config = unexempt();
    config.storage.queue = 4096;
    // A short cap on the spacing keeps the test short; the pacing is the same.
    config.auth.max_login_delay_ms = 1000;
    let server = start_server(config).await;
    register_from(server.addr, ip("127.0.0.2"), "bob").await;
    let mut guessers = Vec::new();
    for a in 0..60u8 {
        let source = ip(&format!("127.0.{}.9", a + 10));
        guessers.extend(connect_many(server.addr, source, 5).await);
    }
    let started = Instant::now();
    for guesser in guessers.iter_mut() {
        guesser.send(&login("bob", "guess guess")).await;
    }
    let mut checked = Vec::new();
    let mut refused = 0;
    for guesser in guessers.iter_mut() {
        match login_answer(guesser).await {
            Err(ErrorCode::InvalidCredentials) => checked.push(started.elapsed()),
            Err(ErrorCode::RateLimited) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    let paced = world_server::throttle::MAX_PACED as usize;
    // delay_after_failures (5) before the account is under attack, then at most MAX_PACED
    // waiting at a time; as each is checked, another may take its place.
    assert!(checked.len() <= 5 + 2 * paced, "{} checked", checked.len());
    assert_eq!(checked.len() + refused, 300);
    checked.sort();
    let last = *checked.last().unwrap();
    assert!(
        last >= Duration::from_secs(4),
        "the paced guesses were checked one spacing apart, not at once: {checked:?}"
    );
    server.shutdown().await;
}

/// A guest from `source` that connects to `addr` and logs in as `name`: `Ok` with its client
/// when it holds a place, the error code that refused it otherwise (at connect or at login).
async fn guest_from(
    addr: std::net::SocketAddr,
    source: IpAddr,
    name: String,
) -> Result<TestClient, ErrorCode> {
    let mut client = TestClient::connect_raw_from(addr, source).await;
    match client.recv().await {
        S2cMessage::S2cWelcome(welcome) => client.welcome = welcome,
        S2cMessage::S2cError(e) => return Err(e.code()),
        other => panic!("{other:?}"),
    }
    client.send(&login(&name, "")).await;
    login_answer(&mut client).await.map(|_| client)
}

/// Guests from 500 loopback addresses at once, 200 of them in one /24 network: that network
/// gets `limits.max_sessions_per_prefix` places, the guests together at most what
/// `limits.account_reserve_percent` leaves them, and a player with an account gets in while
/// they hold every other place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_from_many_addresses_leave_places_for_players_with_accounts() {
    let mut config = unexempt();
    config.server.max_sessions = 400;
    config.limits.max_sessions_per_prefix = 100;
    config.limits.account_reserve_percent = 10;
    let server = start_server(config).await;
    let addr = server.addr;
    drop(register_from(addr, ip("127.9.0.1"), "owner").await);
    // One network, 200 addresses, one guest each.
    let one_network = (1..=200u32).map(|i| (ip(&format!("127.1.0.{i}")), format!("net-{i}")));
    // 300 networks, one guest each.
    let many = (0..300u32).map(|i| {
        let source = ip(&format!("127.{}.{}.1", 2 + i / 200, i % 200));
        (source, format!("many-{i}"))
    });
    let tasks: Vec<_> = one_network
        .chain(many)
        .map(|(source, name)| {
            tokio::spawn(async move { (source, guest_from(addr, source, name).await) })
        })
        .collect();
    let (mut held, mut refused) = (Vec::new(), std::collections::BTreeMap::new());
    let mut from_one = 0;
    for task in tasks {
        match task.await.unwrap() {
            (source, Ok(client)) => {
                from_one += usize::from(source.to_string().starts_with("127.1."));
                held.push(client);
            }
            (_, Err(code)) => *refused.entry(format!("{code:?}")).or_insert(0) += 1,
        }
    }
    assert!(from_one <= 100, "{from_one} guests of one /24");
    assert_eq!(held.len(), 360, "refused: {refused:?}");
    eprintln!(
        "guests held {} places ({from_one} from one network); refused {refused:?}",
        held.len()
    );
    // The owner gets in while they hold.
    let mut owner = connect_once_freed(addr, ip("127.9.0.1")).await;
    owner.send(&login("owner", "correct horse")).await;
    assert_eq!(login_answer(&mut owner).await.unwrap().username, "owner");
    // And a guest more does not.
    assert!(guest_from(addr, ip("127.3.0.1"), "late".into())
        .await
        .is_err());
    drop(held);
    server.shutdown().await;
}
