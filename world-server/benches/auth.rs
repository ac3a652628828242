//! Registrations and logins per second of the DB worker, with the default argon2id cost and a
//! real SQLite file (synchronous = FULL), as the server runs them: one worker thread.
//!
//! ```sh
//! cargo bench -p world-server --bench auth            # 200 of each
//! AUTH_BENCH_N=1000 cargo bench -p world-server --bench auth
//! ```

use std::time::Instant;

use net::SessionId;
use world_server::db::{AuthSettings, DbEvent, DbJob, DbWorker};
use world_server::storage::SqliteStorage;

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
    let started = Instant::now();
    for i in 0..n {
        let job = DbJob::Register {
            session: SessionId(i as u64),
            username: format!("bench-{i:06}"),
            password: "bench-password".into(),
        };
        match worker.execute(job) {
            Some(DbEvent::Auth {
                outcome: Ok(auth), ..
            }) => tokens.push(auth.token),
            other => panic!("register failed: {other:?}"),
        }
    }
    report("register", n, started);

    let started = Instant::now();
    for i in 0..n {
        let job = DbJob::Login {
            session: SessionId(i as u64),
            username: format!("bench-{i:06}"),
            password: "bench-password".into(),
        };
        assert!(matches!(
            worker.execute(job),
            Some(DbEvent::Auth { outcome: Ok(_), .. })
        ));
    }
    report("login (right password)", n, started);

    let started = Instant::now();
    for i in 0..n {
        let job = DbJob::Login {
            session: SessionId(i as u64),
            username: format!("bench-{i:06}"),
            password: "wrong-password".into(),
        };
        assert!(matches!(
            worker.execute(job),
            Some(DbEvent::Auth {
                outcome: Err(_),
                ..
            })
        ));
    }
    report("login (wrong password)", n, started);

    let started = Instant::now();
    for i in 0..n {
        let job = DbJob::Login {
            session: SessionId(i as u64),
            username: format!("nobody-{i:06}"),
            password: "bench-password".into(),
        };
        assert!(matches!(
            worker.execute(job),
            Some(DbEvent::Auth {
                outcome: Err(_),
                ..
            })
        ));
    }
    report("login (unknown name)", n, started);

    let started = Instant::now();
    for (i, token) in tokens.into_iter().enumerate() {
        let job = DbJob::Resume {
            session: SessionId(i as u64),
            token,
        };
        assert!(matches!(
            worker.execute(job),
            Some(DbEvent::Auth { outcome: Ok(_), .. })
        ));
    }
    report("resume (token)", n, started);

    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(what: &str, n: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what:<24} {:>8.1} /s   {:>7.2} ms each",
        n as f64 / secs,
        secs * 1000.0 / n as f64
    );
}
