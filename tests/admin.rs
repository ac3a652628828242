//! The admin listener of a running world server: `/metrics` in the Prometheus text format with
//! a `# HELP` line for every metric and the counts of what the clients did, `/healthz`,
//! `/readyz`, `/api/state` with the sessions, rooms and disconnects, the admin page in a real
//! headless Chromium (its figures, its charts with their axes and legends, "connecting…" until
//! its first answer; skipped, saying so, where Debian's `chromium` is not installed), and the
//! listener's own limits against connections that hold it or send too much.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_get, http_raw, server_with_admin_and, test_config, TestServer};
use protocol::world::C2sWhisper;
use protocol::ErrorCode;
use world_server::serde_json::{self, Value};

/// A server with its admin listener on a free port of 127.0.0.1.
async fn server_with_admin() -> (TestServer, SocketAddr) {
    server_with_admin_and(test_config()).await
}

/// `/api/state`, once `done` holds for it (it is published once a second).
async fn state_when(admin: SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = http_get(admin, "/api/state").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.content_type, "application/json");
        let state: Value = serde_json::from_str(&answer.body).expect("/api/state is JSON");
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "/api/state never got there: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The samples of a `/metrics` text, by name with labels, e.g. `world_disconnects_total{reason="kicked"}`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_state_count_what_the_clients_did() {
    let (server, admin) = server_with_admin().await;
    // The state is built only while someone asks for it: the first request waits for it.
    let first = http_get(admin, "/api/state").await;
    let first: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(first["sessions"], 0, "a state, not a placeholder: {first}");
    let mut ann = server.member("ann", "lobby").await;
    let _bob = server.member("bob", "lobby").await;
    let _cyd = server.member("cyd", "docks").await;
    let mut dan = server.guest("dan").await;
    let _anonymous = server.client().await;
    ann.say("lobby", "hello", 1).await;
    dan.send(&C2sWhisper {
        to: "nobody".into(),
        content: "psst".into(),
        sent_at_us: 0,
    })
    .await;
    dan.expect_error(ErrorCode::UserOffline).await;
    dan.close().await;

    let state = state_when(admin, |s| {
        s["sessions"] == 4 && s["disconnects"]["peer_closed"] == 1
    })
    .await;
    assert_eq!(state["logged_in"], 3, "{state:#}");
    assert_eq!(state["ready"], true, "{state:#}");
    assert_eq!(state["game"]["room_count"], 2, "{state:#}");
    let rooms = state["game"]["rooms"].as_array().unwrap();
    assert_eq!(
        rooms[0]["name"], "lobby",
        "the fullest room first: {state:#}"
    );
    assert_eq!(rooms[0]["count"], 2);
    assert_eq!(rooms[0]["members"], serde_json::json!(["ann", "bob"]));
    let players = state["players"].as_array().unwrap();
    let names: Vec<&str> = players
        .iter()
        .map(|p| p["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ann", "bob", "cyd", ""],
        "logged in first: {state:#}"
    );
    assert!(!state["series"].as_array().unwrap().is_empty(), "{state:#}");

    let health = http_get(admin, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = http_get(admin, "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    let answer = http_get(admin, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert!(answer
        .content_type
        .starts_with("application/openmetrics-text"));
    let text = answer.body;
    // Every metric says what it is, and counters end in _total.
    let mut families = 0;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line["# TYPE ".len()..].split(' ');
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        families += 1;
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
        let sample = match kind {
            "counter" => format!("\n{name}_total"),
            "histogram" => {
                assert!(name.ends_with("_seconds"), "{name}: seconds, the base unit");
                format!("\n{name}_bucket{{")
            }
            _ => format!("\n{name}"),
        };
        assert!(text.contains(&sample), "{name} ({kind}) has no sample");
    }
    assert!(families >= 20, "{families} metric families:\n{text}");
    let values = samples(&text);
    let value = |name: &str| -> f64 {
        *values
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    assert_eq!(value("world_sessions"), 4.0);
    assert_eq!(value("world_sessions_logged_in"), 3.0);
    assert_eq!(value("world_connections_accepted_total"), 5.0);
    assert_eq!(
        value(r#"world_connections_refused_total{reason="server_full"}"#),
        0.0
    );
    assert_eq!(
        value(r#"world_disconnects_total{reason="peer_closed"}"#),
        1.0
    );
    assert_eq!(
        value(r#"world_messages_in_total{message="C2S_Login"}"#),
        4.0
    );
    assert_eq!(
        value(r#"world_messages_in_total{message="C2S_RoomJoin"}"#),
        3.0
    );
    assert_eq!(value(r#"world_messages_in_total{message="C2S_Chat"}"#), 1.0);
    assert_eq!(
        value(r#"world_messages_in_total{message="C2S_Whisper"}"#),
        1.0
    );
    assert_eq!(
        value(r#"world_handler_errors_total{code="user_offline"}"#),
        1.0
    );
    assert_eq!(value("world_rooms"), 2.0);
    assert_eq!(value("world_room_members"), 3.0);
    assert_eq!(value("world_rate_limited_requests_total"), 0.0);
    assert!(value("world_frames_in_total") >= 9.0);
    assert!(value("world_received_bytes_total") >= value("world_frames_in_total") * 4.0);
    assert!(value("world_frames_out_total") >= 9.0);
    assert!(value("world_sent_bytes_total") >= value("world_frames_out_total") * 4.0);
    assert!(value("world_tick_duration_seconds_count") > 0.0);
    assert!(value("world_ticks_over_budget_total") >= 0.0);
    for phase in ["events", "dispatch", "timers", "flush"] {
        assert_eq!(
            value(&format!(
                r#"world_tick_phase_duration_seconds_count{{phase="{phase}"}}"#
            )),
            value("world_tick_duration_seconds_count"),
            "every tick times its {phase} phase"
        );
    }
    assert!(value("world_session_event_queue") >= 0.0);
    for lane in ["write", "quick", "login", "register"] {
        assert!(value(&format!(r#"world_db_queue{{lane="{lane}"}}"#)) >= 0.0);
    }
    // Four guest logins, each checked against the accounts by the DB worker's quick lane.
    assert!(value(r#"world_db_job_duration_seconds_count{lane="quick"}"#) >= 4.0);

    assert_eq!(http_get(admin, "/nothing").await.status, 404);
    let post = http_raw(
        admin,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(post.status, 405);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_a_db_queue_is_full_and_200_once_it_drains() {
    let mut config = test_config();
    // Two registrations may wait; each takes a while to hash.
    config.storage.queue = 2;
    config.auth.argon2_memory_kib = 4096;
    config.auth.argon2_iterations = 2;
    let (server, admin) = server_with_admin_and(config).await;
    assert_eq!(http_get(admin, "/readyz").await.status, 200);

    // Registrations keep arriving faster than they are hashed, until the server has said so
    // on every path.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pressure = tokio::spawn({
        let (addr, stop) = (server.addr, stop.clone());
        async move {
            let mut clients = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..4 {
                    let mut client = common::TestClient::connect(addr).await;
                    client
                        .send(&protocol::world::C2sRegister {
                            username: format!("reg{}", clients.len()),
                            password: "correct horse".into(),
                            ..Default::default()
                        })
                        .await;
                    clients.push(client);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            clients
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer = http_get(admin, "/readyz").await;
        if answer.status != 200 {
            break answer;
        }
        assert!(Instant::now() < deadline, "never not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        answer.body.contains("register queue is full"),
        "{}",
        answer.body
    );
    let state = state_when(admin, |s| s["ready"] == false).await;
    assert!(
        state["not_ready"][0]
            .as_str()
            .unwrap()
            .contains("register queue is full"),
        "{state}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let clients = pressure.await.unwrap();

    // Nothing more arrives: the queue drains and the server is ready again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(admin, "/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The metrics tell the same story: registrations hashed, and those past the full queue
    // answered RATE_LIMITED.
    let metrics = samples(&http_get(admin, "/metrics").await.body);
    assert!(metrics[r#"world_db_job_duration_seconds_count{lane="register"}"#] >= 2.0);
    assert!(metrics[r#"world_handler_errors_total{code="rate_limited"}"#] >= 1.0);
    drop(clients);
    server.shutdown().await;
}

/// A connection to `admin` from `ip`.
async fn connect_from(ip: [u8; 4], admin: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((ip, 0)))?;
    socket.connect(admin).await
}

/// Whether `stream` is closed by the other end within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(within, tokio::io::AsyncReadExt::read(stream, &mut buf)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_bounds_connections_per_address_and_in_all() {
    let (server, admin) = server_with_admin().await;
    // From one address, 8 at once are held; the 9th is closed at once.
    let mut one = Vec::new();
    for _ in 0..world_server::admin::PER_ADDRESS {
        one.push(connect_from([127, 0, 0, 2], admin).await.unwrap());
    }
    let mut ninth = connect_from([127, 0, 0, 2], admin).await.unwrap();
    assert!(closed_within(&mut ninth, Duration::from_secs(1)).await);
    // A head that does not come within the deadline is closed.
    let started = Instant::now();
    assert!(closed_within(&mut one[0], Duration::from_secs(4)).await);
    let took = started.elapsed();
    assert!(
        took >= world_server::admin::HEAD_TIMEOUT - Duration::from_millis(200),
        "{took:?}"
    );
    drop(one);
    // From many addresses, 256 in all; the others are closed at once.
    let mut held = Vec::new();
    for i in 0..33u8 {
        for _ in 0..world_server::admin::PER_ADDRESS {
            held.push(connect_from([127, 0, 1, i], admin).await.unwrap());
        }
    }
    // Well within the head deadline: those closed are those refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = held
        .iter()
        .filter(|stream| match stream.try_read(&mut [0u8; 16]) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        })
        .count();
    assert_eq!(closed, held.len() - world_server::admin::MAX_CONNECTIONS);
    // The game is not held up by it.
    let mut ann = server.guest("ann").await;
    ann.ping(1).await;
    drop(held);
    // A request head longer than 8 KiB is closed unanswered.
    let mut long = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 9000));
    long.extend_from_slice(b"\r\n\r\n");
    assert!(http_raw(admin, &long).await.is_none());
    assert_eq!(http_get(admin, "/healthz").await.status, 200);
    server.shutdown().await;
}

/// 4 addresses keep 160 connections at the admin listener with half a request each, and
/// reconnect as soon as one is closed (a slowloris); meanwhile every health check, readiness
/// check and scrape of another address is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_are_answered_through_a_slowloris_from_a_few_addresses() {
    let (server, admin) = server_with_admin().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut attackers = Vec::new();
    for i in 0..4u8 {
        for _ in 0..40 {
            let mut stopped = stopped.clone();
            attackers.push(tokio::spawn(async move {
                let mut opened = 0u32;
                while !*stopped.borrow() {
                    let Ok(mut stream) = connect_from([127, 0, 0, 10 + i], admin).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    opened += 1;
                    let _ = tokio::io::AsyncWriteExt::write_all(
                        &mut stream,
                        b"GET /metrics HTTP/1.1\r\nX-Slow: ",
                    )
                    .await;
                    tokio::select! {
                        _ = stopped.changed() => {}
                        _ = closed_within(&mut stream, Duration::from_secs(30)) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                opened
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut answered, asked) = (0, 45);
    for i in 0..asked {
        let path = ["/healthz", "/readyz", "/metrics"][i % 3];
        let asked_at = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            http_raw(admin, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes()),
        )
        .await;
        if let Ok(Some(answer)) = answer {
            assert_eq!(answer.status, 200, "{path}: {answer:?}");
            assert!(
                asked_at.elapsed() < Duration::from_secs(1),
                "{path}: {:?}",
                asked_at.elapsed()
            );
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let mut opened = 0;
    for attacker in attackers {
        opened += attacker.await.unwrap();
    }
    eprintln!(
        "{answered} of {asked} health checks answered; the slowloris opened {opened} connections"
    );
    assert!(opened > 160, "the attack reconnected: {opened}");
    assert_eq!(answered, asked);
    server.shutdown().await;
}

const NO_CHROMIUM: &str = "needs Debian's chromium (apt-get install chromium)";

/// Debian's Chromium, when installed.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The page at `url` after `budget_ms` of its time in headless Chromium: (DOM, console lines).
fn render(browser: &str, url: &str, budget_ms: u32) -> (String, Vec<String>) {
    let profile = common::fresh_dir();
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium failed: {stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        console,
    )
}

/// The text of the element with `id` in `dom`.
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    &rest[start..end]
}

/// The figures of the page, by id.
const FIGURES: [&str; 5] = ["sessions", "logged_in", "rooms", "mps", "tickavg"];

/// The charts of the page, by id, with the unit of their value axis and the legend of their
/// lines (none for a chart of one line).
const CHARTS: [(&str, &str, &[&str]); 4] = [
    ("chart-sessions", "sessions", &["sessions", "logged in"]),
    ("chart-rooms", "rooms", &[]),
    ("chart-mps", "messages/s", &[]),
    ("chart-tick", "ms", &["average", "longest"]),
];

/// The SVG element with `id` in `dom`, from its tag to its end.
fn svg<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let end = dom[at..].find("</svg>").expect("</svg>") + at;
    &dom[at..end]
}

/// The texts of the `<text>` elements of `svg`.
fn svg_texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let start = t.find('>').unwrap() + 1;
            &t[start..start + t[start..].find("</text>").unwrap()]
        })
        .collect()
}

/// The points of each `<polyline>` of `svg`.
fn polylines(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|line| {
            let points = line.split("points=\"").nth(1).expect("points");
            points[..points.find('"').unwrap()].split(' ').count()
        })
        .collect()
}

/// The value axis of a chart's texts: its tick labels as numbers (`1,500` is 1500, `20k`
/// 20000), from the bottom up.
fn value_ticks(texts: &[&str]) -> Vec<f64> {
    texts
        .iter()
        .filter_map(|t| {
            let t = t.replace(',', "");
            match t.strip_suffix('k') {
                Some(thousands) => thousands.parse::<f64>().ok().map(|k| k * 1000.0),
                None => t.parse().ok(),
            }
        })
        .collect()
}

/// Checks that the chart `id` of `dom` has a time axis from 5 minutes ago to now, a value axis
/// from 0 with at least three ticks and its unit, and its legend; returns the value axis' top.
fn check_axes(dom: &str, id: &str, unit: &str, legend: &[&str]) -> f64 {
    let chart = svg(dom, id);
    let texts = svg_texts(chart);
    for label in ["−5 min", "−4 min", "−3 min", "−2 min", "−1 min", "now"] {
        assert!(texts.contains(&label), "#{id} has no {label:?}: {texts:?}");
    }
    assert!(
        texts.contains(&unit),
        "#{id} has no unit {unit:?}: {texts:?}"
    );
    for name in legend {
        assert!(
            texts.contains(name),
            "#{id} has no legend {name:?}: {texts:?}"
        );
    }
    let ticks = value_ticks(&texts);
    assert!(ticks.len() >= 3, "#{id}: ticks {ticks:?} of {texts:?}");
    assert_eq!(
        ticks[0], 0.0,
        "#{id}: the value axis starts at 0: {texts:?}"
    );
    assert!(
        ticks.windows(2).all(|w| w[1] > w[0]),
        "#{id}: ticks {ticks:?}"
    );
    *ticks.last().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_says_connecting_in_every_figure_and_chart_until_its_first_answer() {
    let (server, admin) = server_with_admin().await;
    let page = http_get(admin, "/").await;
    server.shutdown().await;
    assert_eq!(page.status, 200);
    // What the browser paints before its script has an answer: no number anywhere.
    for id in FIGURES {
        assert_eq!(element_text(&page.body, id), "connecting…", "#{id}");
    }
    for (id, _, _) in CHARTS {
        assert_eq!(svg_texts(svg(&page.body, id)), ["connecting…"], "#{id}");
    }
    let Some(browser) = chromium() else {
        return common::skip(
            "the_admin_page_says_connecting_in_every_figure_and_chart_until_its_first_answer",
            NO_CHROMIUM,
        );
    };
    // The same in Chromium, from the page as saved, with no server to answer, a moment
    // after it opened.
    let dir = common::fresh_dir();
    let file = dir.join("admin.html");
    std::fs::write(&file, &page.body).unwrap();
    let url = format!("file://{}", file.display());
    let (dom, _) = tokio::task::spawn_blocking(move || render(browser, &url, 50))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    for id in FIGURES {
        assert_eq!(element_text(&dom, id), "connecting…", "#{id}: {dom}");
    }
    for (id, _, _) in CHARTS {
        assert_eq!(svg_texts(svg(&dom, id)), ["connecting…"], "#{id}: {dom}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_in_headless_chromium_shows_a_running_swarm() {
    let Some(browser) = chromium() else {
        return common::skip(
            "the_admin_page_in_headless_chromium_shows_a_running_swarm",
            NO_CHROMIUM,
        );
    };
    let (server, admin) = server_with_admin().await;
    let mut config = dummy_client::ClientConfig::default();
    config.client.server = server.addr;
    config.client.bots = 60;
    config.client.duration_secs = 6;
    config.client.drain_secs = 3;
    config.client.ramp_up_per_sec = 1000;
    config.bots.bots_per_room = 20;
    config.bots.chat_interval_ms = 500;
    config.validate("admin page test").unwrap();
    let swarm = tokio::spawn(dummy_client::run(config, Default::default()));
    // Until two seconds of the series have their rooms: each line of each chart has a segment.
    state_when(admin, |s| {
        let series = s["series"].as_array().unwrap();
        let counted = series.iter().rev().take_while(|s| s["rooms"] == 3).count();
        s["logged_in"] == 60 && s["game"]["room_count"] == 3 && counted >= 2
    })
    .await;

    let url = format!("http://{admin}/");
    let (dom, console) = tokio::task::spawn_blocking(move || render(browser, &url, 3000))
        .await
        .unwrap();
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert_eq!(element_text(&dom, "sessions"), "60", "{dom}");
    assert_eq!(element_text(&dom, "logged_in"), "60");
    assert_eq!(element_text(&dom, "rooms"), "3");
    assert_eq!(element_text(&dom, "readiness"), "ready");
    assert!(
        element_text(&dom, "mps").parse::<u64>().unwrap() > 0,
        "the bots chat: {dom}"
    );
    // Every chart is drawn, with labelled axes: 60 sessions logged in, in 3 rooms, chatting.
    let mut tops = BTreeMap::new();
    for (id, unit, legend) in CHARTS {
        tops.insert(id, check_axes(&dom, id, unit, legend));
        let lines = polylines(svg(&dom, id));
        assert_eq!(lines.len(), legend.len().max(1), "#{id}: {lines:?}");
        assert!(
            lines.iter().all(|&points| points >= 2),
            "#{id}: {lines:?} {dom}"
        );
    }
    assert!(tops["chart-sessions"] >= 60.0, "{tops:?}");
    assert!(tops["chart-sessions"] < 120.0, "a readable scale: {tops:?}");
    assert!(tops["chart-rooms"] >= 3.0, "{tops:?}");
    assert!(tops["chart-mps"] > 0.0, "{tops:?}");
    // The chat world has rooms: their chart is shown.
    assert!(!dom.contains("id=\"rooms-box\" hidden"), "{dom}");
    let table = |id: &str| -> String {
        let rest = dom.split(&format!("id=\"{id}\"")).nth(1).unwrap();
        rest[..rest.find("</table>").unwrap()].to_string()
    };
    let players = table("players");
    assert_eq!(
        players.matches("<tr>").count(),
        1 + 60,
        "a row a player: {players}"
    );
    assert_eq!(players.matches("<td>bot-").count(), 60, "{players}");
    let rooms = table("room-table");
    assert_eq!(
        rooms.matches("<tr>").count(),
        1 + 3,
        "a row a room: {rooms}"
    );
    assert_eq!(rooms.matches("<td>20</td>").count(), 3, "{rooms}");

    let report = swarm.await.unwrap().expect("the swarm runs");
    assert!(report.passed(), "{report}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_says_when_the_server_is_gone() {
    let Some(browser) = chromium() else {
        return common::skip("the_admin_page_says_when_the_server_is_gone", NO_CHROMIUM);
    };
    let (server, admin) = server_with_admin().await;
    let page = http_get(admin, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    server.shutdown().await;
    // The page as saved by someone who had it open, loaded once the server is gone.
    let dir = common::fresh_dir();
    let file = dir.join("admin.html");
    std::fs::write(&file, &page.body).unwrap();
    let url = format!("file://{}", file.display());
    let (dom, _) = tokio::task::spawn_blocking(move || render(browser, &url, 2000))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        element_text(&dom, "readiness").starts_with("server unreachable"),
        "{dom}"
    );
    // Never answered: still no number anywhere.
    for id in FIGURES {
        assert_eq!(element_text(&dom, id), "connecting…", "#{id}: {dom}");
    }
    for (id, _, _) in CHARTS {
        assert_eq!(svg_texts(svg(&dom, id)), ["connecting…"], "#{id}: {dom}");
    }
}
