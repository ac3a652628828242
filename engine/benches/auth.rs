//! Registrations and logins per second of the DB worker, with the default argon2id cost and a
//! real SQLite file (synchronous = FULL), as the server runs them: one worker thread.
//!
//! ```sh
//! cargo bench -p engine --bench auth            # 200 of each
//! AUTH_BENCH_N=1000 cargo bench -p engine --bench auth
//! ```

use std::time::Instant;

use engine::db::{AuthFailure, AuthSettings, Authenticated, DbEvent, DbJob, DbWorker};
use engine::storage::SqliteStorage;
use net::SessionId;

fn main() {
    let n: usize = std::env::var("AUTH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let config = config::ServerConfig::default();
    let dir = std::env::temp_dir().join(format!("auth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bench.db");
    let storage = SqliteStorage::open(&path, true).expect("open database");
    let mut worker =
        DbWorker::new(Box::new(storage), AuthSettings::from(&config)).expect("argon2 parameters");
    println!(
        "argon2id m={} KiB t={} p={}, SQLite synchronous=FULL, one thread, {n} accounts",
        config.auth.argon2_memory_kib,
        config.auth.argon2_iterations,
        config.auth.argon2_parallelism
    );

    let mut tokens = Vec::with_capacity(n);
    run(
        &mut worker,
        "register",
        n,
        |i| DbJob::Register {
            session: SessionId(i as u64),
            username: format!("bench-{i:06}"),
            password: "bench-password".into(),
        },
        |outcome| tokens.push(outcome.expect("register succeeds").token),
    );
    let login = |name: &'static str, password: &'static str| {
        move |i: usize| DbJob::Login {
            session: SessionId(i as u64),
            username: format!("{name}-{i:06}"),
            password: password.into(),
        }
    };
    run(
        &mut worker,
        "login (right password)",
        n,
        login("bench", "bench-password"),
        |o| assert!(o.is_ok()),
    );
    run(
        &mut worker,
        "login (wrong password)",
        n,
        login("bench", "wrong-password"),
        |o| assert!(o.is_err()),
    );
    run(
        &mut worker,
        "login (unknown name)",
        n,
        login("nobody", "bench-password"),
        |o| assert!(o.is_err()),
    );
    let mut tokens = tokens.into_iter();
    run(
        &mut worker,
        "resume (token)",
        n,
        |i| DbJob::Resume {
            session: SessionId(i as u64),
            token: tokens.next().expect("a token per account"),
        },
        |o| assert!(o.is_ok()),
    );

    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `n` jobs made by `job`, checks each outcome, and prints the rate.
fn run(
    worker: &mut DbWorker,
    what: &str,
    n: usize,
    mut job: impl FnMut(usize) -> DbJob,
    mut check: impl FnMut(Result<Authenticated, AuthFailure>),
) {
    let started = Instant::now();
    for i in 0..n {
        match worker.execute(job(i)) {
            Some(DbEvent::Auth { outcome, .. }) => check(outcome),
            other => panic!("{what}: unexpected answer {other:?}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what:<24} {:>8.1} /s   {:>7.2} ms each",
        n as f64 / secs,
        secs * 1000.0 / n as f64
    );
}
