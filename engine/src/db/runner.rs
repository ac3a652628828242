//! The DB worker's rules in time, with the time given: a write the storage could not take
//! (unavailable) is held and tried again every [`WRITE_RETRY`], the writes after it wait behind
//! it, in order, while requests go on (answered at once, UNAVAILABLE); and while the storage
//! is away and nothing else asks it, it is asked now and then whether it is back. The worker's
//! thread ([`super::DbThread`]) runs these rules on the clock, the test kit
//! ([`crate::testing::Sim`]) on simulated time.

use std::time::{Duration, Instant};

use super::{DbDone, DbJob, DbWorker, Lane};

/// How often a write the storage could not take (unavailable) is tried again, and an idle
/// storage that is away asked whether it is back.
pub const WRITE_RETRY: Duration = Duration::from_millis(250);

/// A [`DbWorker`] and the write it holds, if any.
pub struct Runner {
    worker: DbWorker,
    /// A write the storage could not take, and when to try it again.
    held: Option<(DbJob, Instant)>,
    /// While the storage is away and no write is held: when to ask it again.
    next_check: Option<Instant>,
}

impl Runner {
    /// Runs `worker`'s jobs.
    pub fn new(worker: DbWorker) -> Runner {
        Runner {
            worker,
            held: None,
            next_check: None,
        }
    }

    /// The worker.
    pub fn worker(&self) -> &DbWorker {
        &self.worker
    }

    /// The worker, to reach its storage.
    pub fn worker_mut(&mut self) -> &mut DbWorker {
        &mut self.worker
    }

    /// Whether a write is held: the writes given after it must wait until it is written.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// When [`Runner::poll`] next has something to do: try the held write again, or ask a
    /// storage that is away whether it is back.
    pub fn due(&self) -> Option<Instant> {
        self.held.as_ref().map(|(_, due)| *due).or(self.next_check)
    }

    /// Does `job` at `now`: what it did, or `None` for a write the storage could not take,
    /// now held (see [`Runner::holding`]). A job is never given while a write is held unless
    /// it is a request.
    pub fn run(&mut self, job: DbJob, now: Instant) -> Option<DbDone> {
        let lane = job.lane();
        match self.worker.try_execute(job) {
            Ok(event) => {
                if !self.worker.is_available() && self.held.is_none() {
                    // Answered: maybe the storage is back (between attempts to connect again,
                    // asking costs nothing). While a write is held, its retries say when.
                    self.ask(now);
                }
                Some(DbDone { lane, event })
            }
            Err(job) => {
                spdlog::warn!(
                    "storage: unavailable; writes wait for it, and are tried again every {} ms",
                    WRITE_RETRY.as_millis()
                );
                self.held = Some((job, now + WRITE_RETRY));
                self.next_check = None;
                None
            }
        }
    }

    /// Does what is due at `now`: the held write is tried again (what it did, once written),
    /// or a storage that is away asked whether it is back.
    pub fn poll(&mut self, now: Instant) -> Option<DbDone> {
        if let Some((job, due)) = self.held.take() {
            if now < due {
                self.held = Some((job, due));
                return None;
            }
            return match self.worker.try_execute(job) {
                Ok(event) => {
                    spdlog::info!("storage: writes resume");
                    self.ask(now);
                    Some(DbDone {
                        lane: Lane::Write,
                        event,
                    })
                }
                Err(job) => {
                    self.held = Some((job, now + WRITE_RETRY));
                    None
                }
            };
        }
        if self.next_check.is_some_and(|due| now >= due) {
            self.ask(now);
        }
        None
    }

    /// Gives the held write up (the server stopping while the storage is away); whether there
    /// was one.
    pub fn give_up(&mut self) -> bool {
        self.held.take().is_some()
    }

    /// Asks the storage whether it is back; if not, again in [`WRITE_RETRY`].
    fn ask(&mut self, now: Instant) {
        self.next_check = (!self.worker.check()).then_some(now + WRITE_RETRY);
    }
}
