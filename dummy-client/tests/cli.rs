//! The `dummy-client` binary as a user runs it: the report files it writes (a versioned JSON
//! document, a self-contained HTML page), the progress line, and report paths it cannot
//! write refused before the run starts.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Server, TempDir};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dummy-client");

/// Runs the binary with `args`, waiting for it in a blocking thread.
async fn dummy_client(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .output()
            .expect("run dummy-client")
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// An address nothing listens on: a run against it would fail to connect, after seconds.
fn nobody() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The one line of `stderr`.
fn one_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_its_json_document_and_its_html_page_and_labels_its_progress() {
    let dir = TempDir::new("cli-report");
    let server = Server::start(&dir).await;
    let addr = server.addr;
    // Into a directory the run makes, as `--json reports/run.json` does.
    let (json, html) = (
        dir.path("reports").join("run.json"),
        dir.path("reports").join("run.html"),
    );
    let output = dummy_client(vec![
        "--server".into(),
        addr.to_string(),
        "--bots".into(),
        "30".into(),
        "--duration".into(),
        "3".into(),
        "--json".into(),
        json.display().to_string(),
        "--html".into(),
        html.display().to_string(),
        "--log-level".into(),
        "warn".into(),
    ])
    .await;
    server.stop().await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr:\n{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert!(progress.len() >= 2, "{stderr}");
    for label in [
        "bots in rooms 30/30",
        "last second: chat lines sent ",
        ", deliveries received ",
        ", latency p99 ",
        "so far: lost 0, errors 0, disconnects 0",
    ] {
        assert!(
            progress.last().unwrap().contains(label),
            "{label}: {stderr}"
        );
    }

    let document: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(document["schema_version"], 1);
    assert_eq!(document["scenario"], "chat");
    assert_eq!(document["verdict"], "passed", "{document:#}");
    assert_eq!(document["reasons"], serde_json::json!([]));
    let settings = &document["settings"];
    assert_eq!(settings["server"], addr.to_string());
    assert_eq!(settings["bots"], 30);
    assert_eq!(settings["bots_per_room"], 20);
    assert_eq!(settings["rooms"], 2);
    assert_eq!(settings["chat_interval_ms"], 250);
    assert_eq!(settings["message_size_bytes"], 64);
    assert_eq!(settings["duration_ms"], 3000);
    assert_eq!(
        settings["server_tick_ms"], 5,
        "the server's tick, from its welcome"
    );
    assert_eq!(settings["server_name"], "world");
    let results = &document["results"];
    assert_eq!(results["lost"], 0);
    assert_eq!(results["received"], results["expected"]);
    assert!(results["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let duration_ms = results["duration_ms"].as_f64().unwrap();
    assert!(
        (2_900.0..4_000.0).contains(&duration_ms),
        "a 3 s run, in ms: {duration_ms}"
    );
    for absent in [
        "server",
        "auth",
        "bots",
        "run",
        "latency_us",
        "duration_secs",
    ] {
        assert!(results.get(absent).is_none(), "{absent}: {results:#}");
    }
    let series = document["series"].as_array().unwrap();
    assert!(series.len() >= 3, "{document:#}");
    let sent: u64 = series.iter().map(|s| s["sent"].as_u64().unwrap()).sum();
    let received: u64 = series.iter().map(|s| s["received"].as_u64().unwrap()).sum();
    assert!(sent > 0, "{document:#}");
    assert_eq!(
        sent,
        results["sent"].as_u64().unwrap(),
        "the seconds add up"
    );
    assert_eq!(received, results["received"].as_u64().unwrap());
    // One sample a second, and the last, partial one when the run ended.
    let (last, whole) = series.split_last().unwrap();
    for (i, second) in whole.iter().enumerate() {
        let at = second["at_ms"].as_u64().unwrap();
        assert!(
            (900 * (i as u64 + 1)..=1200 * (i as u64 + 1) + 200).contains(&at),
            "second {i} at {at} ms"
        );
    }
    let before = whole.last().map_or(0, |s| s["at_ms"].as_u64().unwrap());
    let at = last["at_ms"].as_u64().unwrap();
    assert!(at > before && at <= before + 1700, "last sample at {at} ms");
    let bars = document["latency_distribution"].as_array().unwrap();
    let counted: u64 = bars.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(Some(counted), results["latency_ms"]["count"].as_u64());

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("class=\"verdict passed\">PASSED"));
    assert!(page.contains(&format!("against {addr}")));
    for id in [
        "chart-throughput-received",
        "chart-latency",
        "chart-distribution",
    ] {
        assert!(page.contains(&format!("<svg id=\"{id}\"")), "{id}");
    }
    let embedded = page
        .split("id=\"report-data\">")
        .nth(1)
        .and_then(|rest| rest.split("</script>").next())
        .unwrap();
    let embedded: Value = serde_json::from_str(embedded).unwrap();
    assert_eq!(embedded, document, "the page carries the same document");
}

/// Runs with `args` against nobody and checks it refused at once: exit 2, `line` on stderr.
async fn refused(args: Vec<String>, line: &str) {
    let mut all = strings(&["--server", &nobody(), "--bots", "5", "--duration", "30"]);
    all.extend(args);
    let started = Instant::now();
    let output = dummy_client(all).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(one_line(&output), line);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused before the run, not after it"
    );
}

#[tokio::test]
async fn report_paths_that_cannot_be_written_are_refused_before_the_run() {
    let dir = TempDir::new("cli-paths");
    let missing = dir.path("no-such-dir").join("deeper").join("report.json");
    let missing_text = missing.display().to_string();
    refused(
        strings(&["--json", &missing_text]),
        &format!(
            "dummy-client: invalid argument --json {missing_text:?}: cannot write it: No such file or directory (os error 2)"
        ),
    )
    .await;
    let folder = dir.path("").display().to_string();
    refused(
        strings(&["--html", &folder]),
        &format!("dummy-client: invalid argument --html {folder:?}: a directory, not a file"),
    )
    .await;
    let same = dir.path("report").display().to_string();
    refused(
        strings(&["--json", &same, "--html", &same]),
        &format!("dummy-client: invalid argument --html {same:?}: the same file as --json"),
    )
    .await;
    assert!(!Path::new(&same).exists(), "nothing is left behind");
}

#[tokio::test]
async fn a_run_that_cannot_start_leaves_no_report_file_behind() {
    let dir = TempDir::new("cli-no-start");
    let json = dir.path("report.json");
    let json_text = json.display().to_string();
    // A resume run without its tokens file cannot start.
    let tokens = dir.path("missing-tokens.txt").display().to_string();
    let output = dummy_client(strings(&[
        "--server",
        &nobody(),
        "--bots",
        "5",
        "--auth",
        "resume",
        "--tokens",
        &tokens,
        "--json",
        &json_text,
    ]))
    .await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        !json.exists(),
        "the report file made for the run is removed"
    );
}
