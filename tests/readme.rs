//! The README's commands, run as a user pastes them.
//!
//! Every shell block of README.md is marked `<!-- readme-test: NAME -->`, and each name is a
//! scenario here: its blocks run with bash, in order, in a fresh directory, on the README's own
//! ports (so the scenarios run one after another, and a port someone else holds skips the
//! test, saying so). What a block says it shows is checked. The blocks run as written, but for
//! what would make CI slow or endless:
//!
//! - `cargo build --release ...` is skipped and `cargo run --release -p X --` and
//!   `target/release/X` are this checkout's already built binaries (debug builds);
//! - a server the README runs in the foreground (in its own terminal) runs in the background;
//! - the bots are fewer and the runs shorter (`--bots`, `--duration`);
//! - `scripts/` is this checkout's, wherever the scenario runs.
//!
//! Blocks that cannot run here say why ([`NOT_RUN`]). A block without a marker, or a marker
//! without a scenario, fails the test: a new command in the README must come with its check.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Marked blocks that are not run, and why.
const NOT_RUN: [(&str, &str); 1] = [(
    "world-client",
    "an interactive terminal program; world-client/tests/tui.rs drives it under tmux",
)];

/// The marked shell blocks of the README, by name; panics on a shell block without a marker.
fn blocks() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut blocks = BTreeMap::new();
    let mut marker: Option<String> = None;
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        if let Some(name) = line
            .strip_prefix("<!-- readme-test: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            marker = Some(name.to_string());
            continue;
        }
        if line == "```sh" {
            let name = marker.take().unwrap_or_else(|| {
                panic!(
                    "README.md line {}: a shell block without a <!-- readme-test: NAME --> marker",
                    number + 1
                )
            });
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| *l != "```")
                .collect();
            assert!(
                blocks.insert(name.clone(), body.join("\n")).is_none(),
                "two blocks named {name}"
            );
        } else if !line.trim().is_empty() {
            marker = None;
        }
    }
    blocks
}

/// The bots of a scenario's runs: enough to fill a few rooms.
const BOTS: usize = 40;

/// The bots of a run with accounts, and its seconds: each bot costs an argon2 hash (of a
/// debug build, about a second) to register and to log in.
const ACCOUNT_BOTS: usize = 3;
const ACCOUNT_SECS: u64 = 8;
/// The run in which the README kills a node two seconds in.
const FAILOVER_SECS: u64 = 6;

/// `block` as the scenario runs it (see the module's docs), its swarms of at most `bots`
/// running `secs` seconds.
fn adapt(block: &str, bots: usize, secs: u64) -> String {
    let mut out = Vec::new();
    for line in block.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("cargo build --release") {
            out.push(format!("true # prebuilt: {trimmed}"));
            continue;
        }
        // A comment after a command, as the README aligns them.
        let line = line.split_once("  #").map_or(line, |(command, _)| command);
        let mut line = line.trim_end().to_string();
        for package in ["world-server", "dummy-client", "arena", "world-client"] {
            line = line
                .replace(
                    &format!("cargo run --release -p {package} --"),
                    &format!("\"$BIN/{package}\""),
                )
                .replace(
                    &format!("cargo run --release -p {package}"),
                    &format!("\"$BIN/{package}\""),
                )
                .replace(
                    &format!("target/release/{package}"),
                    &format!("\"$BIN/{package}\""),
                );
        }
        line = line.replace("scripts/", "\"$REPO\"/scripts/");
        if line.contains("\"$BIN/dummy-client\"") {
            line = shorten_swarm(&line, bots, secs);
        }
        out.push(line);
    }
    out.join("\n")
}

/// A dummy-client line with at most `bots` bots and a run of `secs` seconds.
fn shorten_swarm(line: &str, bots: usize, secs: u64) -> String {
    let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
    let mut duration = false;
    for i in 1..words.len() {
        if words[i - 1] == "--bots" {
            let asked: usize = words[i].parse().expect("a number of bots");
            words[i] = asked.min(bots).to_string();
        }
        if words[i - 1] == "--duration" {
            words[i] = secs.to_string();
            duration = true;
        }
    }
    let line = words.join(" ");
    if duration {
        line
    } else {
        let with = format!("\"$BIN/dummy-client\" --duration {secs}");
        line.replacen("\"$BIN/dummy-client\"", &with, 1)
    }
}

/// What a scenario printed, and how it ended.
struct Run {
    ok: bool,
    output: String,
}

/// Runs `script` with bash in `dir`, its own process group, for at most `limit`; everything
/// it left running is stopped at the end.
fn run(script: &str, dir: &Path, bin: &Path, limit: Duration) -> Run {
    let preamble = "set -eu\n";
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("{preamble}{script}\n"))
        .current_dir(dir)
        .env("BIN", bin)
        .env("REPO", env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run bash");
    let pgid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // What the block left in the background (servers, nats-server) goes with the scenario.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    let ok = status.is_some_and(|s| s.success());
    Run {
        ok,
        output: if status.is_none() {
            format!("{output}\n(still running after {limit:?})")
        } else {
            output
        },
    }
}

fn has(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The ports the README's blocks use; a test cannot run while another process holds one.
const PORTS: [u16; 14] = [
    7000, 7080, 7443, 9100, 7001, 7002, 7003, 7081, 7082, 7083, 4222, 5433, 7100, 7180,
];

#[test]
fn every_command_of_the_readme_runs_as_written() {
    let test = "every_command_of_the_readme_runs_as_written";
    let blocks = blocks();
    if let Some(port) = PORTS
        .iter()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", **p)).is_err())
    {
        return common::skip(
            test,
            &format!("port {port}, which the README uses, is taken"),
        );
    }
    // The binaries the blocks call, side by side.
    let bin = common::fresh_dir();
    for (package, name) in [
        ("world-server", "world-server"),
        ("dummy-client", "dummy-client"),
        ("arena", "arena"),
    ] {
        std::os::unix::fs::symlink(common::binary(package, name), bin.join(name))
            .expect("link the binary");
    }
    let mut scenarios: Vec<(&str, Vec<&str>, Vec<&str>)> = Vec::new();
    let mut covered: Vec<&str> = NOT_RUN.iter().map(|(name, _)| *name).collect();
    let mut skipped = Vec::new();
    // name, blocks, what the output must show
    scenarios.push((
        "one server, bots, a backup, accounts",
        vec!["first-commands", "bots", "backup", "accounts", "chaos"],
        vec![
            "server: world listening on 127.0.0.1:7000",
            "web: the page on http://127.0.0.1:7080/",
            "result      PASSED",
            "tokens saved: 3",
            "  resumes     ",
        ],
    ));
    covered.extend(["first-commands", "bots", "backup", "accounts", "chaos"]);
    scenarios.push((
        "the admin listener",
        vec!["admin"],
        vec!["ready", "world_sessions 0"],
    ));
    covered.push("admin");
    scenarios.push((
        "the arena",
        vec!["arena"],
        vec![
            "server: arena listening on 127.0.0.1:7100",
            "storage: in memory",
            "PASSED",
        ],
    ));
    covered.push("arena");
    scenarios.push((
        "a run recorded and replayed",
        vec!["record"],
        vec![
            "record: recording every input of the world to recording",
            "result      PASSED",
            "every tick's output is the recorded one; the recording ended: the server stopped",
        ],
    ));
    covered.push("record");
    if has("openssl") {
        scenarios.push(("TLS", vec!["tls"], vec![" over tls,", " over wss,"]));
    } else {
        skipped.push("tls: needs openssl (apt-get install openssl)");
    }
    covered.push("tls");
    if has("nats-server") {
        scenarios.push((
            "three nodes as one world",
            vec!["cluster", "cluster-bots"],
            vec!["result      PASSED"],
        ));
        scenarios.push((
            "a node lost under load",
            vec!["cluster", "cluster-failover"],
            vec!["never recovered 0", "result      PASSED"],
        ));
        if has("initdb") || Path::new("/usr/lib/postgresql").exists() {
            scenarios.push((
                "three nodes sharing PostgreSQL",
                vec![
                    "postgres",
                    "cluster",
                    "KILL_NODES",
                    "cluster-postgres",
                    "cluster-bots",
                ],
                vec![
                    "postgres://world:secret@127.0.0.1:5433/world",
                    "result      PASSED",
                ],
            ));
        } else {
            skipped.push("postgres, cluster-postgres: need Debian's postgresql");
        }
    } else {
        skipped.push("cluster, cluster-bots, cluster-failover, cluster-postgres: need nats-server");
    }
    covered.extend([
        "cluster",
        "cluster-bots",
        "cluster-failover",
        "postgres",
        "cluster-postgres",
    ]);
    for name in blocks.keys() {
        assert!(
            covered.contains(&name.as_str()),
            "README block {name:?} has no scenario in tests/readme.rs"
        );
    }
    for why in skipped {
        common::skip(test, why);
    }
    for (name, why) in NOT_RUN {
        common::skip(&format!("{test} (block {name})"), why);
    }

    for (scenario, names, expected) in scenarios {
        let dir = common::fresh_dir();
        let mut script = String::new();
        for name in names {
            if name == "KILL_NODES" {
                // The README asks to stop the SQLite nodes before starting them on PostgreSQL.
                script.push_str("kill %2 %3 %4; sleep 1\n");
                continue;
            }
            let block = blocks
                .get(name)
                .unwrap_or_else(|| panic!("no README block {name:?}"));
            let (bots, secs) = if name == "accounts" {
                (ACCOUNT_BOTS, ACCOUNT_SECS)
            } else if name == "cluster-failover" {
                // Long enough that the node dies in the middle of the run.
                (BOTS, FAILOVER_SECS)
            } else {
                (BOTS, 3)
            };
            let mut adapted = adapt(block, bots, secs);
            if name == "first-commands" {
                // The first line runs the server in a terminal of its own; the second is the
                // test suite itself, running this test.
                let server = adapted.lines().next().expect("the server line").to_string();
                adapted = format!(
                    "{server} 2>server.log &\nfor _ in $(seq 100); do grep -q 'web: the page' server.log && break; sleep 0.1; done\ncat server.log"
                );
            }
            if name == "backup" {
                // The server of the first commands runs here, on world.db.
                adapted.push_str("\nhead -c 15 world-backup.db; echo");
            }
            if name == "accounts" {
                adapted.push_str("\necho \"tokens saved: $(wc -l < bot-tokens.txt)\"");
            }
            script.push_str(&format!("echo '== {name}'\n{adapted}\n"));
        }
        let started = Instant::now();
        let result = run(&script, &dir, &bin, Duration::from_secs(240));
        eprintln!(
            "readme: {scenario}: {} in {:.1} s",
            if result.ok { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        assert!(
            result.ok,
            "the README's {scenario} failed; the script:\n{script}\n\nits output:\n{}",
            result.output
        );
        for line in expected {
            assert!(
                result.output.contains(line),
                "the README's {scenario} should show {line:?}; the output:\n{}",
                result.output
            );
        }
        if scenario.starts_with("one server") {
            assert!(dir.join("reports/run.json").exists(), "{}", result.output);
            assert!(dir.join("reports/run.html").exists());
            assert!(
                result.output.contains("SQLite format 3"),
                "{}",
                result.output
            );
        }
        if scenario == "the arena" {
            assert!(
                !dir.join("arena.db").exists() && !dir.join("world.db").exists(),
                "the arena keeps its guests in memory, and opens no database file"
            );
        }
        if scenario.starts_with("three nodes as one world") {
            for node in 1..=3 {
                let db: PathBuf = dir.join(format!("world-node{node}.db"));
                assert!(
                    db.exists(),
                    "each node keeps its own file: {}",
                    db.display()
                );
            }
        }
        if scenario.contains("PostgreSQL") {
            let _ = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh"))
                .arg("stop")
                .status();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&bin);
}
