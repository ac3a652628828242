//! Writes to the DB worker, one batch per kind and tick, held while its write queue is full.

use crate::db::{DbJob, DbQueue, Lane};

/// Writes waiting for a full write queue, per kind, before the oldest are dropped.
pub const MAX_PENDING_WRITES: usize = 100_000;

/// Submits `pending` as one write job made by `make`; when the write queue is full, the items
/// wait for the next tick (all but the newest [`MAX_PENDING_WRITES`] dropped).
pub fn offer<T>(
    db: &mut DbQueue,
    pending: &mut Vec<T>,
    make: impl FnOnce(Vec<T>) -> DbJob,
    what: &str,
) {
    if pending.is_empty() {
        return;
    }
    if !db.is_alive() {
        spdlog::error!("storage: the DB worker has stopped; {what} lost");
        pending.clear();
        return;
    }
    if !db.has_room(Lane::Write) {
        keep_newest(pending, what);
        return;
    }
    // There is room: this cannot be refused.
    let _ = db.submit(make(std::mem::take(pending)));
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
