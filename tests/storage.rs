//! The server's SQLite file on a disk that fills up under it (a tmpfs of the test's own; the
//! test needs root to mount one, and says in one line that it skipped elsewhere): players stay,
//! requests that need the disk are answered UNAVAILABLE with a retry hint, `/readyz` says
//! so, and once room is made the waiting writes land, in order, by themselves.

mod common;

use std::time::{Duration, Instant};

use common::TestClient;
use protocol::world::{C2sRegister, C2sRoomJoin, S2cChat, S2cError, S2cRoomJoined};
use protocol::{ErrorCode, S2cMessage};

/// Fills the file system of `dir` with one file, until it says it is full.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_is_survived_and_the_lines_said_meanwhile_are_written_after() {
    let test = "a_disk_that_fills_is_survived_and_the_lines_said_meanwhile_are_written_after";
    let Some(disk) = common::Tmpfs::mount("size=2m") else {
        common::skip(test, "cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut config = common::test_config();
    config.storage.path = disk.0.join("world.db");
    let (server, admin) = common::server_with_admin_and(config).await;
    let mut ann = server.client().await;
    ann.register("ann", "correct horse").await;
    ann.send(&C2sRoomJoin {
        room: "lobby".into(),
        ..Default::default()
    })
    .await;
    ann.expect::<S2cRoomJoined>().await;

    let filler = fill(&disk.0);
    // Lines said while the disk is full are echoed at once, and wait to be written.
    for i in 0..5 {
        ann.say("lobby", &format!("said on a full disk {i}"), i)
            .await;
        let echo = ann.expect::<S2cChat>().await;
        assert_eq!(echo.content, format!("said on a full disk {i}"));
    }
    // A registration needs the disk: UNAVAILABLE, with a retry hint; the session stays.
    let mut bob = server.client().await;
    let register = C2sRegister {
        username: "bob".into(),
        password: "correct horse".into(),
        ..Default::default()
    };
    bob.send(&register).await;
    let error = bob.expect::<S2cError>().await;
    assert_eq!(error.code(), ErrorCode::Unavailable, "{error:?}");
    assert_eq!(error.retry_after_ms, 1_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = common::http_get(admin, "/readyz").await;
        if ready.status == 503 && ready.body.contains("database is unavailable") {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz: {ready:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ann.ping(1).await;

    // Room again: the writes land and the registration goes through, by themselves.
    std::fs::remove_file(filler).unwrap();
    let freed = Instant::now();
    loop {
        bob.send(&register).await;
        match bob.recv().await {
            S2cMessage::S2cAuthResult(r) => {
                assert_eq!(r.username, "bob");
                break;
            }
            S2cMessage::S2cError(e) if e.code() == ErrorCode::Unavailable => {
                assert!(freed.elapsed() < Duration::from_secs(10), "still {e:?}");
                tokio::time::sleep(Duration::from_millis(u64::from(e.retry_after_ms))).await;
            }
            other => panic!("{other:?}"),
        }
    }
    eprintln!(
        "{test}: registered {:.2} s after room was made",
        freed.elapsed().as_secs_f64()
    );
    // On disk: a server started again on the file replays every line said on the full disk,
    // in order.
    drop((ann, bob));
    server.shutdown_keeping_db().await;
    let mut config = common::test_config();
    config.storage.path = disk.0.join("world.db");
    let server = common::start_server(config).await;
    let mut cyd: TestClient = server.guest("cyd").await;
    cyd.send(&C2sRoomJoin {
        room: "lobby".into(),
        ..Default::default()
    })
    .await;
    let mut history = Vec::new();
    while let Some(Ok(message)) = cyd.next_within(Duration::from_millis(500)).await {
        if let S2cMessage::S2cChat(c) = message {
            history.push(c.content);
        }
    }
    let expected: Vec<String> = (0..5).map(|i| format!("said on a full disk {i}")).collect();
    assert_eq!(history, expected);
    drop(cyd);
    server.shutdown_keeping_db().await;
}
