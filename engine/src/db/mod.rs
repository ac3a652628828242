//! The DB worker: all database and password-hashing work, on a thread of its own.
//!
//! The world queues [`DbJob`]s in its [`DbQueue`], which leave through the core's output; the
//! driver hands them to the worker's thread ([`DbThread`]) and never waits for it; each job
//! comes back as a [`DbDone`] (with its [`DbEvent`] answer, if it has one) in the core's inputs
//! of the next tick. Four queues (lanes), taken in this order:
//!
//! 1. writes: batches of chat history and session records, token revocations (at most a few
//!    per tick, from the world itself);
//! 2. quick requests: history loads for joins, token resumes, guest checks (microseconds);
//! 3. hashing requests (an argon2 hash, tens of ms), in two queues taken in turn: password
//!    logins, and registrations.
//!
//! So a burst of password logins cannot hold up writes or quick requests, a write queued
//! before a history load is always done before it, and a flood of registrations takes at most
//! every other hash from the password logins of existing accounts.
//!
//! Each lane holds at most its capacity of jobs given out and not yet done, counted by the
//! [`DbQueue`] in the core, so the thread's queues (of the same capacities) never fill: when a
//! lane is full the job is refused at once, where it is made: a request is answered
//! RATE_LIMITED (the server is busy), a batch of writes stays with the world to be offered
//! again next tick.

mod errors;
mod runner;
mod worker;

use std::collections::VecDeque;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Select, Sender, TryRecvError};
use net::SessionId;
use sha2::{Digest, Sha256};

use crate::storage::{SessionLogEntry, Storage, StorageError};

pub(crate) use errors::report_error;
pub use runner::{Runner, WRITE_RETRY};
pub use worker::{AuthSettings, DbWorker};

/// SHA-256 of a token: what the database keeps instead of the token.
pub type TokenHash = [u8; 32];

/// Hashes a token for storage and lookup.
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// The answer of a module's job to the module, if it has one.
pub type ModuleAnswer = Option<Box<dyn std::any::Any + Send>>;

/// The work of a module's job: it gets the storage and returns its answer, or the storage's
/// error.
pub type ModuleWork = Box<dyn FnMut(&mut dyn Storage) -> Result<ModuleAnswer, StorageError> + Send>;

/// A module's own work for the DB worker ([`DbJob::Module`]): `run` gets the storage (where
/// the module's own records and logs are, by [`Storage::module_get`], [`Storage::log_append`]
/// and the like) and returns the answer, which comes back to the module's
/// [`crate::world::Setup::on_db_answer`] hook as [`DbEvent::Module`] with the module's name.
///
/// An error it returns is logged and the job has no answer, except that a write whose
/// storage is unavailable ([`StorageError::Unavailable`]: its database restarting, the
/// network cut) is run again, in order, until it is written: so `run` may run more than once,
/// and a write must give the same result when it does. A job that must always be answered
/// (a read something waits for) handles its own errors and returns `Ok`.
pub struct ModuleJob {
    /// The module's name, which its answer carries.
    pub module: &'static str,
    /// Whether it is a write: the write queue, taken before every other, whose jobs run in
    /// the order given; else the queue of quick requests.
    pub write: bool,
    /// The work; a panic in it stops the DB worker, as a bug in a storage would.
    pub run: ModuleWork,
}

impl ModuleJob {
    /// A read (or any quick request) of `module`.
    pub fn read(
        module: &'static str,
        run: impl FnMut(&mut dyn Storage) -> Result<ModuleAnswer, StorageError> + Send + 'static,
    ) -> DbJob {
        DbJob::Module(ModuleJob {
            module,
            write: false,
            run: Box::new(run),
        })
    }

    /// A write of `module`, done before any read queued after it.
    pub fn write(
        module: &'static str,
        run: impl FnMut(&mut dyn Storage) -> Result<ModuleAnswer, StorageError> + Send + 'static,
    ) -> DbJob {
        DbJob::Module(ModuleJob {
            module,
            write: true,
            run: Box::new(run),
        })
    }
}

impl std::fmt::Debug for ModuleJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleJob")
            .field("module", &self.module)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

/// Work for the DB worker.
#[derive(Debug)]
pub enum DbJob {
    /// Create an account and a token.
    Register {
        /// Who asked.
        session: SessionId,
        /// The wanted username (checked already).
        username: String,
        /// The password (checked already).
        password: String,
    },
    /// Check a password and issue a token.
    Login {
        /// Who asked.
        session: SessionId,
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// Log in with a token.
    Resume {
        /// Who asked.
        session: SessionId,
        /// The token as the client sent it.
        token: String,
    },
    /// Check that no account holds a username a guest wants.
    Guest {
        /// Who asked.
        session: SessionId,
        /// The username.
        username: String,
    },
    /// Revoke a token.
    Revoke(TokenHash),
    /// Delete expired and revoked tokens, and session records older than the retention.
    Prune,
    /// Write session log entries, in one transaction.
    RecordSessions(Vec<SessionLogEntry>),
    /// A module's own job.
    Module(ModuleJob),
}

impl DbJob {
    /// The queue the job goes to.
    pub fn lane(&self) -> Lane {
        match self {
            DbJob::Revoke(_) | DbJob::Prune | DbJob::RecordSessions(_) => Lane::Write,
            DbJob::Module(job) if job.write => Lane::Write,
            DbJob::Module(_) => Lane::Quick,
            DbJob::Login { .. } => Lane::Login,
            DbJob::Register { .. } => Lane::Register,
            DbJob::Resume { .. } | DbJob::Guest { .. } => Lane::Quick,
        }
    }
}

/// The DB worker's queues, in the order it takes them: see the [module](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Writes of history, session records and tokens.
    Write,
    /// History loads, token resumes, guest checks.
    Quick,
    /// Password logins (a hash each).
    Login,
    /// Registrations (a hash each).
    Register,
}

/// A login that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The account id; 0 for a guest.
    pub user_id: u64,
    /// The username as registered (or as the guest asked).
    pub username: String,
    /// The token to give the client (empty for a guest).
    pub token: String,
    /// Whether this is a guest login.
    pub guest: bool,
}

/// Why a login failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Register: the username is taken (ignoring case).
    UsernameTaken,
    /// Login: unknown username or wrong password. Guest: the name belongs to an account.
    InvalidCredentials,
    /// Resume: unknown, expired or revoked token.
    InvalidToken,
    /// The storage failed.
    Internal(String),
    /// The storage is unavailable for now (its database restarting, the network cut); it
    /// connects again by itself.
    Unavailable(String),
}

/// An answer from the DB worker.
#[derive(Debug)]
pub enum DbEvent {
    /// The outcome of Register, Login, Resume or Guest.
    Auth {
        /// Who asked.
        session: SessionId,
        /// The outcome.
        outcome: Result<Authenticated, AuthFailure>,
    },
    /// The answer of a module's job ([`DbJob::Module`]).
    Module {
        /// The module's name.
        module: &'static str,
        /// What its job returned.
        answer: Box<dyn std::any::Any + Send>,
    },
}

/// Why a job was not queued; the job is handed back.
#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full.
    Full(DbJob),
    /// The worker has stopped.
    Stopped(DbJob),
}

/// How long the worker keeps trying a write at shutdown while the storage is unavailable.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Capacity of the write queue, in batches: the world sends at most a few per tick, so this is
/// minutes of writes waiting behind a stalled disk.
pub const WRITE_QUEUE: usize = 4096;

impl Lane {
    /// The lane's place in [`crate::metrics::LANES`] order.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the DB worker did with one job: the job's lane, and its answer if it has one. Every
/// job comes back as one, which gives its place in the lane back ([`DbQueue::done`]).
#[derive(Debug)]
pub struct DbDone {
    /// The job's lane.
    pub lane: Lane,
    /// The answer, if the job has one.
    pub event: Option<DbEvent>,
}

/// The world's side of the DB worker, with no thread and no channel: jobs are queued here
/// and leave through the core's output ([`crate::core::Output::db`]); what the worker did
/// comes back as [`crate::core::Input::Db`].
///
/// Each lane holds at most its capacity of jobs given out and not yet done, so the driver's
/// queues to the worker (of the same capacities) always have room, and a job is refused at
/// once when its lane is full ([`SubmitError::Full`]): a request is answered RATE_LIMITED,
/// a batch of writes stays with the world to be offered again next tick.
#[derive(Debug)]
pub struct DbQueue {
    caps: [usize; 4],
    in_flight: [usize; 4],
    jobs: Vec<DbJob>,
    answers: VecDeque<DbEvent>,
    stopped: bool,
    died: bool,
}

impl DbQueue {
    /// Lanes of `queue` jobs each for quick requests, password logins and registrations, and
    /// [`WRITE_QUEUE`] batches of writes.
    pub fn new(queue: usize) -> DbQueue {
        let queue = queue.max(1);
        DbQueue {
            caps: [WRITE_QUEUE, queue, queue, queue],
            in_flight: [0; 4],
            jobs: Vec::new(),
            answers: VecDeque::new(),
            stopped: false,
            died: false,
        }
    }

    /// Queues a job for the worker, or refuses it at once: its lane is full, or the worker
    /// has stopped.
    pub fn submit(&mut self, job: DbJob) -> Result<(), SubmitError> {
        if self.stopped {
            return Err(SubmitError::Stopped(job));
        }
        let lane = job.lane().index();
        if self.in_flight[lane] >= self.caps[lane] {
            return Err(SubmitError::Full(job));
        }
        self.in_flight[lane] += 1;
        self.jobs.push(job);
        Ok(())
    }

    /// The jobs queued since this was last called, in order: what the driver hands the
    /// worker.
    pub fn take_jobs(&mut self, into: &mut Vec<DbJob>) {
        into.append(&mut self.jobs);
    }

    /// The worker did a job: its place in the lane is free, and its answer waits for
    /// [`DbQueue::poll`].
    pub fn done(&mut self, done: DbDone) {
        let lane = done.lane.index();
        self.in_flight[lane] = self.in_flight[lane].saturating_sub(1);
        self.answers.extend(done.event);
    }

    /// The next answer, oldest first.
    pub fn poll(&mut self) -> Option<DbEvent> {
        self.answers.pop_front()
    }

    /// The worker has died (a panic): every later job is refused with
    /// [`SubmitError::Stopped`], and [`DbQueue::take_death`] says so once.
    pub fn died(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.died = true;
        }
    }

    /// True once, after [`DbQueue::died`], when every answer that came before has been
    /// taken: the caller must answer whatever still waits for the worker.
    pub fn take_death(&mut self) -> bool {
        let dead = self.died && self.answers.is_empty();
        if dead {
            self.died = false;
        }
        dead
    }

    /// Whether `lane` takes a job now.
    pub fn has_room(&self, lane: Lane) -> bool {
        !self.stopped && self.in_flight[lane.index()] < self.caps[lane.index()]
    }

    /// Whether the worker takes jobs.
    pub fn is_alive(&self) -> bool {
        !self.stopped
    }

    /// Jobs given out and not yet done, per lane ([`crate::metrics::LANES`] order).
    pub fn in_flight(&self) -> [usize; 4] {
        self.in_flight
    }

    /// Each lane's capacity, [`DbQueue::in_flight`] order.
    pub fn caps(&self) -> [usize; 4] {
        self.caps
    }
}

struct Queues {
    write: Sender<DbJob>,
    quick: Sender<DbJob>,
    login: Sender<DbJob>,
    register: Sender<DbJob>,
}

/// The DB worker's thread, as the driver holds it: jobs go in by lane, and each comes back as
/// a [`DbDone`]. The queues have [`DbQueue`]'s capacities, which keeps them from filling.
pub struct DbThread {
    queues: Option<Queues>,
    done: Receiver<DbDone>,
    thread: Option<JoinHandle<()>>,
    /// Whether the storage answers, as the worker last found.
    available: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DbThread {
    /// Starts the worker thread; `queue` bounds the quick requests, the password logins and the
    /// registrations given to it, each (as [`DbQueue::new`] with the same `queue`).
    pub fn spawn(worker: DbWorker, queue: usize) -> std::io::Result<DbThread> {
        DbThread::spawn_timed(worker, queue, None)
    }

    /// [`DbThread::spawn`], recording each job's time in `job_times` (one histogram per
    /// queue, in [`crate::metrics::LANES`] order).
    pub fn spawn_timed(
        worker: DbWorker,
        queue: usize,
        job_times: Option<Vec<prometheus_client::metrics::histogram::Histogram>>,
    ) -> std::io::Result<DbThread> {
        let caps = DbQueue::new(queue).caps();
        let (write_tx, write_rx) = bounded::<DbJob>(caps[0]);
        let (quick_tx, quick_rx) = bounded::<DbJob>(caps[1]);
        let (login_tx, login_rx) = bounded::<DbJob>(caps[2]);
        let (register_tx, register_rx) = bounded::<DbJob>(caps[3]);
        // Room for every job the lanes hold: the worker never waits to say it is done.
        let (done_tx, done_rx) = bounded::<DbDone>(caps.iter().sum::<usize>() + 1);
        let available = worker.availability();
        let thread = std::thread::Builder::new()
            .name("db-worker".into())
            .spawn(move || {
                // Waits until some queue has a job (or is closed) without taking it, so that
                // jobs are always taken in lane order below.
                let mut ready = Select::new();
                ready.recv(&write_rx);
                ready.recv(&quick_rx);
                ready.recv(&login_rx);
                ready.recv(&register_rx);
                // The request queues alone: what is waited on while a write waits.
                let mut requests = Select::new();
                requests.recv(&quick_rx);
                requests.recv(&login_rx);
                requests.recv(&register_rx);
                // The hashing queues take turns: this one goes first next time.
                let mut register_first = false;
                // A quick request, else one hash, the hashing queues in turn.
                let mut take_request = || -> Result<DbJob, TryRecvError> {
                    if let Ok(job) = quick_rx.try_recv() {
                        return Ok(job);
                    }
                    let (first, second) = if register_first {
                        (&register_rx, &login_rx)
                    } else {
                        (&login_rx, &register_rx)
                    };
                    match first.try_recv() {
                        Ok(job) => {
                            // The queue not served goes first next time.
                            register_first = !register_first;
                            Ok(job)
                        }
                        Err(_) => second.try_recv(),
                    }
                };
                let mut runner = Runner::new(worker);
                // Since when the queues are closed (the server stopping) while a write waits.
                let mut closed_at: Option<Instant> = None;
                loop {
                    let now = Instant::now();
                    if let Some(done) = runner.poll(now) {
                        if done_tx.send(done).is_err() {
                            break;
                        }
                    }
                    if runner.holding()
                        && closed_at.is_some_and(|at| now.duration_since(at) >= CLOSE_WAIT)
                    {
                        runner.give_up();
                        spdlog::error!(
                            "storage: still unavailable at shutdown after {} s; the writes waiting for it are lost",
                            CLOSE_WAIT.as_secs()
                        );
                        break;
                    }
                    let wait = runner.due().map(|due| due.saturating_duration_since(now));
                    // While a write is held, the writes after it wait in their queue, in
                    // order, and requests go on (answered at once while the storage is away).
                    let job = if runner.holding() {
                        match take_request() {
                            Ok(job) => job,
                            Err(TryRecvError::Empty) => {
                                let _ = requests.ready_timeout(wait.unwrap_or_default());
                                continue;
                            }
                            Err(TryRecvError::Disconnected) => {
                                // Closing: only the held write is left to try, for a while.
                                closed_at.get_or_insert(now);
                                std::thread::sleep(wait.unwrap_or_default());
                                continue;
                            }
                        }
                    } else {
                        // In lane order: writes, then quick requests, then one hash.
                        match write_rx.try_recv() {
                            Ok(job) => job,
                            // Closed (all queues close together) and every write done:
                            // requests are dropped, their sessions are gone with the server.
                            Err(TryRecvError::Disconnected) => break,
                            Err(TryRecvError::Empty) => match take_request() {
                                Ok(job) => job,
                                Err(_) => {
                                    match wait {
                                        Some(wait) => {
                                            let _ = ready.ready_timeout(wait);
                                        }
                                        None => {
                                            ready.ready();
                                        }
                                    }
                                    continue;
                                }
                            },
                        }
                    };
                    let lane = job.lane();
                    let started = Instant::now();
                    let Some(done) = runner.run(job, started) else {
                        continue;
                    };
                    if let Some(times) = &job_times {
                        times[lane.index()].observe(started.elapsed().as_secs_f64());
                    }
                    // The tick loop drains every tick; if it is gone, so is the reader.
                    if done_tx.send(done).is_err() {
                        break;
                    }
                }
                spdlog::info!("storage: DB worker stopped");
            })?;
        Ok(DbThread {
            queues: Some(Queues {
                write: write_tx,
                quick: quick_tx,
                login: login_tx,
                register: register_tx,
            }),
            done: done_rx,
            thread: Some(thread),
            available,
        })
    }

    /// Hands `job` to the worker. It never waits when the jobs come from a [`DbQueue`] of the
    /// same `queue` whose [`DbDone`]s are given back to it; a job for a worker that has
    /// stopped is dropped (its [`DbQueue`] refuses jobs once told).
    pub fn send(&self, job: DbJob) {
        let Some(queues) = &self.queues else {
            return;
        };
        let queue = match job.lane() {
            Lane::Write => &queues.write,
            Lane::Quick => &queues.quick,
            Lane::Login => &queues.login,
            Lane::Register => &queues.register,
        };
        let _ = queue.send(job);
    }

    /// The next job done, if one is.
    pub fn poll(&mut self) -> Option<DbDone> {
        self.done.try_recv().ok()
    }

    /// Whether the storage answers: false while its database is away (the worker connects
    /// again by itself, and requests are answered UNAVAILABLE meanwhile).
    pub fn storage_available(&self) -> bool {
        self.available.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the worker takes jobs: its thread runs.
    pub fn is_alive(&self) -> bool {
        self.queues.is_some() && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// True once, when the worker thread has died while it was still wanted (a panic) and
    /// every job it did has been polled: tell the core ([`crate::core::Input::DbDied`]).
    pub fn take_death(&mut self) -> bool {
        let dead = self.queues.is_some()
            && self.thread.as_ref().is_some_and(|t| t.is_finished())
            && self.done.is_empty();
        if dead {
            self.queues.take();
            spdlog::error!("storage: the DB worker has died; logins and history are unavailable");
        }
        dead
    }

    /// Stops taking jobs, lets the worker finish the queued writes (requests are dropped: the
    /// sessions that made them are closed), and waits for it.
    pub fn close(&mut self) {
        self.queues.take();
        if let Some(thread) = self.thread.take() {
            // Keep draining so that the worker never blocks on a full queue of answers.
            while !thread.is_finished() {
                while self.done.try_recv().is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = thread.join();
        }
    }
}

impl Drop for DbThread {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn worker(argon2_memory_kib: u32) -> DbWorker {
        let settings = AuthSettings {
            argon2_memory_kib,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            token_ttl_us: 3_600_000_000,
            session_log_us: None,
            ..AuthSettings::from(&config::ServerConfig::default())
        };
        DbWorker::new(Box::new(MemoryStorage::new()), settings).unwrap()
    }

    /// A worker over `storage`, with the cheapest password hashing.
    #[cfg(feature = "sqlite")]
    fn worker_over(storage: Box<dyn Storage>) -> DbWorker {
        let settings = AuthSettings {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            ..AuthSettings::from(&config::ServerConfig::default())
        };
        DbWorker::new(storage, settings).unwrap()
    }

    /// The next answer of the worker (jobs without one are skipped).
    fn next_event(db: &mut DbThread) -> DbEvent {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(event) = db.poll().and_then(|done| done.event) {
                return event;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no answer from the DB worker"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn a_module_s_jobs_run_on_the_worker_its_writes_first_and_answer_with_its_name() {
        let mut db = DbThread::spawn(worker(64), 64).unwrap();
        // The worker is held by a first write until both jobs below are queued: the write
        // queued after the read still runs first, as writes do.
        let (go, wait) = bounded::<()>(1);
        db.send(ModuleJob::write("votes", move |_| {
            wait.recv().unwrap();
            Ok(None)
        }));
        db.send(ModuleJob::read("votes", |storage| {
            let value = storage.module_get("votes", "lobby")?;
            Ok(Some(Box::new(value)))
        }));
        db.send(ModuleJob::write("votes", |storage| {
            storage.module_put("votes", "lobby", b"3")?;
            Ok(None)
        }));
        go.send(()).unwrap();
        match next_event(&mut db) {
            DbEvent::Module { module, answer } => {
                assert_eq!(module, "votes");
                let value = answer.downcast::<Option<Vec<u8>>>().unwrap();
                assert_eq!(value.as_deref(), Some(&b"3"[..]), "the write went first");
            }
            other => panic!("{other:?}"),
        }
        db.close();
    }

    #[test]
    fn quick_jobs_are_answered_before_queued_password_hashing() {
        // Hashing with 16 MiB takes long enough that the queue is still full of it when the
        // history load arrives.
        let mut db = DbThread::spawn(worker(16 * 1024), 64).unwrap();
        for i in 0..6 {
            db.send(DbJob::Register {
                session: SessionId(i),
                username: format!("user{i}"),
                password: "password-1".into(),
            });
        }
        db.send(crate::modules::rooms::store::load("lobby".into(), 10));
        let mut order = Vec::new();
        for _ in 0..7 {
            order.push(match next_event(&mut db) {
                DbEvent::Module { .. } => "history",
                DbEvent::Auth { outcome, .. } => {
                    assert!(outcome.is_ok(), "{outcome:?}");
                    "register"
                }
            });
        }
        let position = order.iter().position(|e| *e == "history").unwrap();
        assert!(
            position <= 1,
            "the history load waited behind hashing: {order:?}"
        );
        db.close();
    }

    #[test]
    fn password_logins_take_turns_with_a_flood_of_registrations() {
        let mut db = DbThread::spawn(worker(2048), 64).unwrap();
        db.send(DbJob::Register {
            session: SessionId(1000),
            username: "victim".into(),
            password: "password-1".into(),
        });
        assert!(matches!(
            next_event(&mut db),
            DbEvent::Auth { outcome: Ok(_), .. }
        ));
        for i in 0..40 {
            db.send(DbJob::Register {
                session: SessionId(i),
                username: format!("farm{i}"),
                password: "password-1".into(),
            });
        }
        db.send(DbJob::Login {
            session: SessionId(2000),
            username: "victim".into(),
            password: "password-1".into(),
        });
        let mut order = Vec::new();
        for _ in 0..41 {
            match next_event(&mut db) {
                DbEvent::Auth { session, outcome } => {
                    assert!(outcome.is_ok(), "{outcome:?}");
                    order.push(session);
                }
                other => panic!("{other:?}"),
            }
        }
        let position = order.iter().position(|s| *s == SessionId(2000)).unwrap();
        assert!(
            position <= 3,
            "the login waited behind {position} registrations: {order:?}"
        );
        db.close();
    }

    #[test]
    fn a_full_lane_refuses_at_once_and_a_job_done_makes_room() {
        let mut queue = DbQueue::new(2);
        let register = |i: u64| DbJob::Register {
            session: SessionId(i),
            username: format!("user{i}"),
            password: "password-1".into(),
        };
        assert!(queue.submit(register(1)).is_ok());
        assert!(queue.submit(register(2)).is_ok());
        assert!(matches!(
            queue.submit(register(3)),
            Err(SubmitError::Full(_))
        ));
        // Other lanes have their own room.
        assert!(queue.submit(DbJob::RecordSessions(Vec::new())).is_ok());
        assert!(queue
            .submit(DbJob::Guest {
                session: SessionId(4),
                username: "guest".into(),
            })
            .is_ok());
        assert_eq!(queue.in_flight(), [1, 1, 0, 2]);
        let mut jobs = Vec::new();
        queue.take_jobs(&mut jobs);
        assert_eq!(jobs.len(), 4);
        queue.done(DbDone {
            lane: Lane::Register,
            event: None,
        });
        assert!(queue.submit(register(5)).is_ok());
        queue.died();
        assert!(matches!(
            queue.submit(register(6)),
            Err(SubmitError::Stopped(_))
        ));
        assert!(queue.take_death());
        assert!(!queue.take_death(), "said once");
    }

    #[test]
    fn close_finishes_the_writes_given_to_the_worker() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let mut db = DbThread::spawn(worker(64), 4).unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let written = written.clone();
            db.send(ModuleJob::write("votes", move |_| {
                std::thread::sleep(std::time::Duration::from_micros(200));
                written.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            }));
        }
        db.close();
        assert_eq!(written.load(Ordering::SeqCst), 100);
        assert!(!db.is_alive());
    }

    /// A write that meets a full disk waits, and is written once there is room again; the
    /// database is said to be unavailable meanwhile. On a small tmpfs of the test's own (needs
    /// root to mount; skipped, saying so, elsewhere).
    #[cfg(feature = "sqlite")]
    #[test]
    fn a_write_that_meets_a_full_disk_waits_for_room() {
        use crate::storage::SqliteStorage;
        use std::io::Write;
        use std::process::Command;
        use std::time::Duration;

        let test = "a_write_that_meets_a_full_disk_waits_for_room";
        let dir = std::env::temp_dir().join(format!("world-full-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped {test}: cannot mount a tmpfs here (needs root)");
            let _ = std::fs::remove_dir(&dir);
            return;
        }
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(&self.0).status();
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let _unmount = Unmount(dir.clone());
        let storage = SqliteStorage::open(&dir.join("world.db"), false).unwrap();
        let mut db = DbThread::spawn(worker_over(Box::new(storage)), 64).unwrap();
        // Fill the disk.
        let filler = dir.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        while file.write_all(&[7u8; 16 * 1024]).is_ok() {}
        drop(file);
        db.send(ModuleJob::write("votes", |storage| {
            storage.module_put("votes", "big", &vec![1u8; 256 * 1024])?;
            Ok(Some(Box::new("written")))
        }));
        // Requests are still answered; the write waits, and the database is said to be away.
        db.send(DbJob::Guest {
            session: SessionId(1),
            username: "ann".into(),
        });
        assert!(matches!(next_event(&mut db), DbEvent::Auth { .. }));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while db.storage_available() {
            assert!(
                std::time::Instant::now() < deadline,
                "never said unavailable"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(600));
        assert!(db.poll().is_none(), "not written while the disk is full");
        // Room again: it is written.
        std::fs::remove_file(&filler).unwrap();
        match next_event(&mut db) {
            DbEvent::Module { answer, .. } => {
                assert_eq!(*answer.downcast::<&str>().unwrap(), "written");
            }
            other => panic!("{other:?}"),
        }
        assert!(db.storage_available());
        db.close();
    }

    /// Writes made while PostgreSQL is down wait, in order, and are written once it is back;
    /// requests meanwhile are answered at once.
    #[cfg(feature = "postgres")]
    #[test]
    fn writes_wait_for_a_database_that_went_away_and_requests_do_not() {
        use crate::storage::PostgresStorage;
        use std::time::Duration;

        let Some(mut pg) = testkit::OwnPostgres::for_test(
            "writes_wait_for_a_database_that_went_away_and_requests_do_not",
        ) else {
            return;
        };
        let url = pg.server().fresh_database();
        let storage = PostgresStorage::connect(&url, "n1").unwrap();
        let settings = AuthSettings {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            ..AuthSettings::from(&config::ServerConfig::default())
        };
        let mut db =
            DbThread::spawn(DbWorker::new(Box::new(storage), settings).unwrap(), 64).unwrap();
        pg.stop_immediate();
        // Two writes, the second depending on the first having gone before it.
        db.send(ModuleJob::write("votes", |storage| {
            storage.module_put("votes", "lobby", b"1")?;
            Ok(Some(Box::new("first")))
        }));
        db.send(ModuleJob::write("votes", |storage| {
            let first = storage.module_get("votes", "lobby")?;
            assert_eq!(first.as_deref(), Some(&b"1"[..]), "in order");
            storage.module_put("votes", "lobby", b"2")?;
            Ok(Some(Box::new("second")))
        }));
        // A login meanwhile is answered, with an error, and soon.
        let asked = std::time::Instant::now();
        db.send(DbJob::Guest {
            session: SessionId(1),
            username: "ann".into(),
        });
        match next_event(&mut db) {
            DbEvent::Auth {
                outcome: Err(AuthFailure::Unavailable(_)),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        assert!(!db.storage_available(), "said to the driver");
        std::thread::sleep(Duration::from_secs(1));
        pg.start_again().unwrap();
        let mut written = Vec::new();
        while written.len() < 2 {
            match next_event(&mut db) {
                DbEvent::Module { answer, .. } => {
                    written.push(*answer.downcast::<&str>().unwrap());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(written, ["first", "second"]);
        assert!(db.storage_available(), "available again");
        let value = testkit::Postgres::scalar(
            &url,
            "SELECT count(*) FROM module_data WHERE module = 'votes' AND value = convert_to('2', 'UTF8')",
        );
        assert_eq!(value, 1, "the second write is in the database");
        db.close();
    }

    #[test]
    fn unknown_name_and_wrong_password_get_the_same_answer() {
        let mut w = worker(64);
        let register = DbJob::Register {
            session: SessionId(1),
            username: "ann".into(),
            password: "password-1".into(),
        };
        assert!(matches!(
            w.execute(register),
            Some(DbEvent::Auth { outcome: Ok(_), .. })
        ));
        let login = |name: &str, password: &str| DbJob::Login {
            session: SessionId(2),
            username: name.into(),
            password: password.into(),
        };
        let wrong = w.execute(login("ann", "password-2"));
        let unknown = w.execute(login("bob", "password-1"));
        for event in [wrong, unknown] {
            assert!(matches!(
                event,
                Some(DbEvent::Auth {
                    outcome: Err(AuthFailure::InvalidCredentials),
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_write_queued_before_a_history_load_is_always_done_first() {
        use crate::modules::rooms::store;
        let mut db = DbThread::spawn(worker(64), 64).unwrap();
        for i in 0..3000u64 {
            let room = format!("r{i}");
            let line = S2cChatFrame::of(&room, i);
            let limits = crate::storage::LogLimits {
                entries: 10,
                max_logs: 10_000,
            };
            db.send(store::append(vec![line], limits));
            db.send(store::load(room.clone(), 10));
            match next_event(&mut db) {
                DbEvent::Module { answer, .. } => {
                    let loaded = answer.downcast::<store::Loaded>().unwrap();
                    assert_eq!(loaded.room, room);
                    assert_eq!(
                        loaded.lines.len(),
                        1,
                        "the load of {room} ran before its write"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        db.close();
    }

    /// Encoded S2C_Chat frames, as the world queues them for history.
    struct S2cChatFrame;

    impl S2cChatFrame {
        fn of(room: &str, n: u64) -> bytes::Bytes {
            let chat = protocol::world::S2cChat {
                room: room.into(),
                from: "ann".into(),
                content: format!("line {n}"),
                sent_at_us: n,
                server_time_us: n,
                history: false,
            };
            protocol::frame(&chat).unwrap()
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn close_drops_queued_logins_instead_of_hashing_them() {
        use crate::storage::{SqliteStorage, Storage};

        let dir = std::env::temp_dir().join(format!("db-close-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("close.db");
        let _ = std::fs::remove_file(&path);
        let settings = AuthSettings {
            argon2_memory_kib: 16 * 1024,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            token_ttl_us: 3_600_000_000,
            session_log_us: None,
            ..AuthSettings::from(&config::ServerConfig::default())
        };
        let storage = SqliteStorage::open(&path, false).unwrap();
        let mut db =
            DbThread::spawn(DbWorker::new(Box::new(storage), settings).unwrap(), 64).unwrap();
        for i in 0..64 {
            db.send(DbJob::Register {
                session: SessionId(i),
                username: format!("user{i}"),
                password: "password-1".into(),
            });
        }
        db.close();
        let mut storage = SqliteStorage::open(&path, false).unwrap();
        let created = (0..64)
            .filter(|i| storage.account(&format!("user{i}")).unwrap().is_some())
            .count();
        assert!(
            created < 8,
            "{created} of 64 queued registrations ran after close"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
