//! What the rooms module keeps in the database: each room's last lines of chat, in a log of
//! its own (the storage's logs, [`crate::storage::Storage::log_append`], keyed by room, each
//! line as its encoded S2C_Chat frame), in use while the room has members (the history of a
//! room empty past `world.history_retention_days` is deleted). Every job is a [`ModuleJob`]
//! of the module [`MODULE`], as a game's own module would make it; the answer of a load comes
//! back to the module's `on_db_answer` hook as a [`Loaded`].

use bytes::Bytes;

use crate::db::{report_error, DbJob, ModuleJob};
use crate::storage::{LogEntry, LogLimits};

/// The module's name, which its jobs and their answers carry.
pub const MODULE: &str = "rooms";

/// The answer of [`load`]: `room`'s last lines, oldest first.
#[derive(Debug)]
pub struct Loaded {
    /// The room.
    pub room: String,
    /// Its lines, as encoded S2C_Chat frames.
    pub lines: Vec<Bytes>,
}

/// Reads the last `limit` lines of `room`. A storage failure is logged, and the room starts
/// with no history.
pub fn load(room: String, limit: usize) -> DbJob {
    ModuleJob::read(MODULE, move |storage| {
        let lines = match storage.log_tail(MODULE, &room, limit) {
            Ok(entries) => entries.into_iter().map(|e| e.data).collect(),
            Err(e) => {
                report_error(&format!("cannot load the history of {room:?}"), &e);
                Vec::new()
            }
        };
        Some(Box::new(Loaded { room, lines }))
    })
}

/// Appends chat lines (encoded S2C_Chat frames) to their rooms' history, in one transaction,
/// keeping `limits`.
pub fn append(frames: Vec<Bytes>, limits: LogLimits) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        let lines: Vec<LogEntry> = frames.into_iter().filter_map(entry).collect();
        match storage.log_append(MODULE, &lines, limits) {
            Ok(0) => {}
            Ok(n) => spdlog::debug!(
                "storage: deleted the history of {n} rooms empty the longest (world.max_history_rooms)"
            ),
            Err(e) => report_error(&format!("lost {} history lines", lines.len()), &e),
        }
        None
    })
}

/// Rooms in use again: their history is kept while they are.
pub fn in_use(rooms: Vec<String>) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        if let Err(e) = storage.logs_in_use(MODULE, &rooms) {
            report_error("cannot mark rooms in use", &e);
        }
        None
    })
}

/// Rooms that emptied at `now_us`: their history is kept the retention from then.
pub fn emptied(rooms: Vec<String>, now_us: u64) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        if let Err(e) = storage.logs_idle(MODULE, &rooms, now_us) {
            report_error("cannot mark rooms empty", &e);
        }
        None
    })
}

/// Deletes the history of rooms empty since before `before_us`.
pub fn prune(before_us: u64) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        match storage.prune_logs(MODULE, before_us) {
            Ok(0) => {}
            Ok(n) => spdlog::info!(
                "storage: deleted the history of {n} rooms empty for longer than the retention"
            ),
            Err(e) => report_error("cannot prune history", &e),
        }
        None
    })
}

/// The log entry of an encoded S2C_Chat frame: in its room's log, at the server's time it
/// was said. Decoded here, on the DB worker's thread, rather than kept beside the frame.
fn entry(frame: Bytes) -> Option<LogEntry> {
    let payload = frame.get(protocol::HEADER_LEN..)?;
    let chat = <protocol::world::S2cChat as prost::Message>::decode(payload).ok()?;
    Some(LogEntry {
        key: chat.room,
        at_us: chat.server_time_us,
        data: frame,
    })
}
