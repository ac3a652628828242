//! Writes to the DB worker, one batch per kind and tick, held while its write queue is full.

use crate::db::{DbJob, DbQueue, SubmitError};

/// Writes waiting for a full write queue, per kind, before the oldest are dropped.
pub const MAX_PENDING_WRITES: usize = 100_000;

/// Submits `pending` as one job made by `wrap`; when the write queue is full, `unwrap` takes the
/// items back to wait for the next tick (all but the newest [`MAX_PENDING_WRITES`] dropped).
pub fn offer<T>(
    db: &mut DbQueue,
    pending: &mut Vec<T>,
    wrap: fn(Vec<T>) -> DbJob,
    unwrap: fn(DbJob) -> Option<Vec<T>>,
    what: &str,
) {
    if pending.is_empty() {
        return;
    }
    match db.submit(wrap(std::mem::take(pending))) {
        Ok(()) => {}
        Err(SubmitError::Full(job)) => {
            if let Some(mut items) = unwrap(job) {
                keep_newest(&mut items, what);
                *pending = items;
            }
        }
        Err(SubmitError::Stopped(_)) => {
            spdlog::error!("storage: the DB worker has stopped; {what} lost");
        }
    }
}

/// Keeps one of each name in `rooms` (the last) and at most [`MAX_PENDING_WRITES`] of them.
pub fn dedup_newest(rooms: &mut Vec<String>, what: &str) {
    if rooms.len() > 1 {
        let mut seen = std::collections::HashSet::new();
        let mut kept: Vec<String> = rooms
            .drain(..)
            .rev()
            .filter(|room| seen.insert(room.clone()))
            .collect();
        kept.reverse();
        *rooms = kept;
    }
    keep_newest(rooms, what);
}

/// Drops all but the newest [`MAX_PENDING_WRITES`] of `items`, saying so in the log.
pub fn keep_newest<T>(items: &mut Vec<T>, what: &str) {
    if items.len() > MAX_PENDING_WRITES {
        let dropped = items.len() - MAX_PENDING_WRITES;
        items.drain(..dropped);
        spdlog::error!("storage: write queue full for too long: {dropped} {what} dropped");
    }
}
