//! The arena's own settings, its `[game]` section: read into `ArenaConfig` with the engine's
//! one-line errors, by the real `arena` binary at start.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arena::ArenaConfig;

/// A config file of its own for this test.
fn config_file(test: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("arena-{test}-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Runs the arena binary on `text` until it exits (within 30 s): its status and stderr.
fn run_to_exit(test: &str, text: &str) -> (Option<i32>, String) {
    let path = config_file(test, text);
    let output = Command::new(env!("CARGO_BIN_EXE_arena"))
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--web", "off"])
        .output()
        .expect("run arena");
    let _ = std::fs::remove_file(&path);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_arena_takes_its_rules_from_its_game_section_with_defaults_for_the_rest() {
    let text = "[game]\nworld_size = 2000.0\nspeed = 25.0\n";
    let config = config::ServerConfig::from_toml_str(text, "arena.toml").unwrap();
    let rules: ArenaConfig = config.game_config().unwrap();
    assert_eq!(
        rules,
        ArenaConfig {
            world_size: 2000.0,
            speed: 25.0,
            ..ArenaConfig::default()
        }
    );
}

#[test]
fn a_bad_game_key_or_value_stops_the_arena_with_one_line() {
    let cases = [
        (
            "typo",
            "[game]\nsped = 3.0\n",
            "unknown key \"game.sped\" (did you mean \"game.speed\"?)",
        ),
        (
            "radius",
            "[game]\nworld_size = 100.0\nview_radius = 500.0\n",
            "game.view_radius must be 1..=100 (got 500)",
        ),
        (
            "type",
            "[game]\nspeed = \"fast\"\n",
            "game.speed: invalid type: string \"fast\", expected f32",
        ),
    ];
    for (test, text, expected) in cases {
        let (code, stderr) = run_to_exit(test, text);
        assert_eq!(code, Some(2), "{test}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{test}: one line: {stderr}");
        assert!(
            stderr.starts_with("arena: invalid config"),
            "{test}: {stderr}"
        );
        assert!(stderr.contains(expected), "{test}: {stderr}");
    }
}

#[test]
fn the_arena_starts_on_good_rules_and_stops_on_sigterm() {
    let path = config_file("good", "[game]\nworld_size = 2000.0\n");
    // A port chosen here and freed may be taken meanwhile by another test's arena (they listen
    // on port 0): then the connection reaches that one, which ends it; the run starts again on
    // another port.
    for _attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_arena"))
            .arg("--config")
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--web", "off"])
            .stderr(Stdio::null())
            .spawn()
            .expect("run arena");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                break stream;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("arena exited with {status} before listening");
            }
            assert!(Instant::now() < deadline, "arena did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        };
        // S2C_Welcome's header: the tick loop runs, with its signal handlers in place.
        let mut header = [0u8; 4];
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        if std::io::Read::read_exact(&mut stream, &mut header).is_err()
            || u16::from_le_bytes([header[2], header[3]]) != 1002
        {
            // Not this arena's welcome: another process had the port.
            let _ = child.kill();
            let _ = child.wait();
            continue;
        }
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let status = child.wait().expect("wait for arena");
        let _ = std::fs::remove_file(&path);
        assert_eq!(status.code(), Some(0));
        return;
    }
    panic!("no arena of this test could be reached on a port of its own in 5 tries");
}
