//! The arena scenario against the real arena game, in process: bots walk, and every view the
//! server sends is checked against every bot's true position.

use std::time::Duration;

use arena::{Arena, ArenaConfig};
use config::{ClientConfig, ServerConfig};
use dummy_client::arena_swarm::run_arena;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn quiet_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let level = std::env::var("ARENA_LOG").unwrap_or_else(|_| "warn".to_owned());
        if let Err(error) =
            config::logging::init(&config::LogConfig::default(), Some(&level), "test")
        {
            eprintln!("test: cannot set up logging: {error}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_bots_see_exactly_the_bots_near_them_and_the_run_passes() {
    quiet_logs();
    let mut server = ServerConfig::default();
    server.server.tick_ms = 20;
    server.web.listen = String::new();
    server.auth.argon2_memory_kib = 64;
    server.auth.argon2_iterations = 1;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let storage = Box::new(world_server::storage::SqliteStorage::in_memory().unwrap());
    // 60 bots in 120 x 120 with a view of 25: each sees several others, and they come and go.
    let game = Arena::new(ArenaConfig {
        world_size: 120.0,
        view_radius: 25.0,
        speed: 30.0,
        ..ArenaConfig::default()
    });
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(world_server::run_game(
        listener,
        server,
        game,
        storage,
        async move { stopped.cancelled().await },
    ));

    let mut config = ClientConfig::default();
    config.client.server = addr;
    config.client.bots = 60;
    config.client.duration_secs = 3;
    config.client.ramp_up_per_sec = 1000;
    config.bots.move_interval_ms = 100;
    config.validate("arena test").unwrap();
    let report = run_arena(config, CancellationToken::new())
        .await
        .expect("the arena run starts");
    assert!(report.passed(), "{report}");
    assert_eq!(report.spawned, 60);
    assert!(report.ticks_checked > 50, "{report}");
    assert!(report.mean_in_view > 1.0, "{report}");
    assert!(report.pairs_checked > 10_000, "{report}");
    assert!(report.latency_us.count > 100, "{report}");
    // The JSON document: the arena's totals in milliseconds, the settings, one sample a second.
    let document: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(document["scenario"], "arena");
    assert_eq!(document["verdict"], "passed");
    assert_eq!(document["settings"]["move_interval_ms"], 100);
    assert_eq!(
        document["settings"]["server_tick_ms"],
        document["results"]["tick_ms"]
    );
    assert_eq!(document["results"]["spawned"], 60);
    assert_eq!(
        document["results"]["speed_per_sec"].as_f64(),
        Some(f64::from(report.rules.speed))
    );
    let walk_ms = document["results"]["walk_ms"].as_f64().unwrap();
    assert!(
        (walk_ms - report.walk_secs * 1000.0).abs() < 1e-6,
        "{walk_ms}"
    );
    assert!(document["results"]["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    let series = document["series"].as_array().unwrap();
    assert!(series.len() >= 2, "{document:#}");
    let sum = |key: &str| -> u64 { series.iter().map(|s| s[key].as_u64().unwrap()).sum() };
    assert_eq!(sum("sent"), report.moves, "the seconds add up to the moves");
    assert_eq!(sum("received"), report.updates);
    assert!(series
        .iter()
        .any(|s| s["bots"] == 60 && s["received"].as_u64() > Some(0)));
    assert!(report.to_html().contains("updates received per second"));

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_fails_the_run() {
    quiet_logs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = ClientConfig::default();
    config.client.server = addr;
    config.client.bots = 3;
    config.client.duration_secs = 1;
    config.client.login_timeout_secs = 1;
    let report = run_arena(config, CancellationToken::new())
        .await
        .expect("the arena run starts");
    assert!(!report.passed());
    assert_eq!(report.spawned, 0);
}
