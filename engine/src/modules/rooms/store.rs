//! What the rooms module keeps in the database: each room's last lines of chat, and which
//! rooms are in use (the history of a room empty past `world.history_retention_days` is
//! deleted). Every job is a [`ModuleJob`] of the module [`MODULE`], as a game's own module
//! would make it; the answer of a load comes back to the module's `on_db_answer` hook as a
//! [`Loaded`].

use bytes::Bytes;

use crate::db::{report_error, DbJob, ModuleJob};
use crate::storage::{HistoryLimits, HistoryLine};

/// The module's name, which its jobs and their answers carry.
pub const MODULE: &str = "rooms";

/// The answer of [`load`]: `room`'s last lines, oldest first.
#[derive(Debug)]
pub struct Loaded {
    /// The room.
    pub room: String,
    /// Its lines.
    pub lines: Vec<HistoryLine>,
}

/// Reads the last `limit` lines of `room`. A storage failure is logged, and the room starts
/// with no history.
pub fn load(room: String, limit: usize) -> DbJob {
    ModuleJob::read(MODULE, move |storage| {
        let lines = storage.history(&room, limit).unwrap_or_else(|e| {
            report_error(&format!("cannot load the history of {room:?}"), &e);
            Vec::new()
        });
        Some(Box::new(Loaded { room, lines }))
    })
}

/// Appends chat lines (encoded S2C_Chat frames) to their rooms' history, in one transaction,
/// keeping `limits`.
pub fn append(frames: Vec<Bytes>, limits: HistoryLimits) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        let lines: Vec<HistoryLine> = frames.iter().filter_map(history_line).collect();
        match storage.append_history(&lines, limits) {
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
        if let Err(e) = storage.rooms_in_use(&rooms) {
            report_error("cannot mark rooms in use", &e);
        }
        None
    })
}

/// Rooms that emptied at `now_us`: their history is kept the retention from then.
pub fn emptied(rooms: Vec<String>, now_us: u64) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        if let Err(e) = storage.rooms_emptied(&rooms, now_us) {
            report_error("cannot mark rooms empty", &e);
        }
        None
    })
}

/// Deletes the history of rooms empty since before `before_us`.
pub fn prune(before_us: u64) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        match storage.prune_history(before_us) {
            Ok(0) => {}
            Ok(n) => spdlog::info!(
                "storage: deleted the history of {n} rooms empty for longer than the retention"
            ),
            Err(e) => report_error("cannot prune history", &e),
        }
        None
    })
}

/// The history line carried by an encoded S2C_Chat frame.
fn history_line(frame: &Bytes) -> Option<HistoryLine> {
    let payload = frame.get(protocol::HEADER_LEN..)?;
    let chat = <protocol::world::S2cChat as prost::Message>::decode(payload).ok()?;
    Some(HistoryLine {
        room: chat.room,
        from: chat.from,
        content: chat.content,
        sent_at_us: chat.sent_at_us,
        server_time_us: chat.server_time_us,
    })
}
