//! What the rooms module keeps in the database: each room's last lines of chat, in a log of
//! its own (the storage's logs, [`crate::storage::Storage::log_append`], keyed by room, each
//! line as its encoded S2C_Chat frame), in use while the room has members (the history of a
//! room empty past `world.history_retention_days` is deleted). Every job is a [`ModuleJob`]
//! of the module [`MODULE`], as a game's own module would make it; the answer of a load comes
//! back to the module's `on_db_answer` hook as a [`Loaded`].

use bytes::Bytes;

use crate::codec::{put_bytes, put_str, put_var, AnswerCodec};
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

/// How a recording carries a [`Loaded`] ([`crate::record`]): the room, then each line.
pub const ANSWER_CODEC: AnswerCodec = AnswerCodec {
    module: MODULE,
    encode: |answer, out| {
        let Some(loaded) = answer.downcast_ref::<Loaded>() else {
            return false;
        };
        put_str(out, &loaded.room);
        put_var(out, loaded.lines.len() as u64);
        for line in &loaded.lines {
            put_bytes(out, line);
        }
        true
    },
    decode: |r| {
        let room = r.string()?;
        let count = r.var()?;
        let lines = (0..count).map(|_| r.bytes()).collect::<Result<_, _>>()?;
        Ok(Box::new(Loaded { room, lines }))
    },
};

/// Reads the last `limit` lines of `room`. A storage failure is logged, and the room starts
/// with no history.
pub fn load(mut room: String, limit: usize) -> DbJob {
    ModuleJob::read(MODULE, move |storage| {
        // Always answered: the room's joins wait for it.
        let lines = match storage.log_tail(MODULE, &room, limit) {
            Ok(entries) => entries.into_iter().map(|e| e.data).collect(),
            Err(e) => {
                report_error(&format!("cannot load the history of {room:?}"), &e);
                Vec::new()
            }
        };
        let room = std::mem::take(&mut room);
        Ok(Some(Box::new(Loaded { room, lines })))
    })
}

/// Appends chat lines (encoded S2C_Chat frames) to their rooms' history, in one transaction,
/// keeping `limits`.
pub fn append(frames: Vec<Bytes>, limits: LogLimits) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        let lines: Vec<LogEntry> = frames.iter().cloned().filter_map(entry).collect();
        let deleted = storage.log_append(MODULE, &lines, limits)?;
        if deleted > 0 {
            spdlog::debug!(
                "storage: deleted the history of {deleted} rooms empty the longest (world.max_history_rooms)"
            );
        }
        Ok(None)
    })
}

/// Rooms in use again: their history is kept while they are.
pub fn in_use(rooms: Vec<String>) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        storage.logs_in_use(MODULE, &rooms)?;
        Ok(None)
    })
}

/// Rooms that emptied at `now_us`: their history is kept the retention from then.
pub fn emptied(rooms: Vec<String>, now_us: u64) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        storage.logs_idle(MODULE, &rooms, now_us)?;
        Ok(None)
    })
}

/// Deletes the history of rooms empty since before `before_us`.
pub fn prune(before_us: u64) -> DbJob {
    ModuleJob::write(MODULE, move |storage| {
        let deleted = storage.prune_logs(MODULE, before_us)?;
        if deleted > 0 {
            spdlog::info!(
                "storage: deleted the history of {deleted} rooms empty for longer than the retention"
            );
        }
        Ok(None)
    })
}

/// The log entry of an encoded S2C_Chat frame: in its room's log, at the server's time it
/// was said. Read here, on the DB worker's thread, rather than kept beside the frame; only the
/// room (field 1) and the server's time (field 5) are read, and nothing else is copied.
fn entry(frame: Bytes) -> Option<LogEntry> {
    let (room, at_us) = room_and_time(frame.get(protocol::HEADER_LEN..)?)?;
    Some(LogEntry {
        key: room.to_string(),
        at_us,
        data: frame,
    })
}

/// Fields 1 (`room`) and 5 (`server_time_us`) of an encoded S2C_Chat.
fn room_and_time(mut payload: &[u8]) -> Option<(&str, u64)> {
    use prost::encoding::decode_varint;
    let (mut room, mut at_us) = (None, 0);
    while !payload.is_empty() {
        let key = decode_varint(&mut payload).ok()?;
        let (tag, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                let value = decode_varint(&mut payload).ok()?;
                if tag == 5 {
                    at_us = value;
                }
            }
            2 => {
                let len = usize::try_from(decode_varint(&mut payload).ok()?).ok()?;
                let bytes = payload.get(..len)?;
                payload = &payload[len..];
                if tag == 1 {
                    room = Some(std::str::from_utf8(bytes).ok()?);
                }
            }
            // S2C_Chat has no other wire types.
            _ => return None,
        }
    }
    Some((room?, at_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_and_time_of_a_line_are_read_as_prost_would() {
        let chat = protocol::world::S2cChat {
            room: "lobby".into(),
            from: "ann".into(),
            content: "é".repeat(300),
            sent_at_us: 7,
            server_time_us: 1_767_225_600_000_000,
            history: true,
        };
        let frame = protocol::frame(&chat).unwrap();
        let entry = entry(frame.clone()).unwrap();
        assert_eq!(
            (entry.key.as_str(), entry.at_us),
            ("lobby", chat.server_time_us)
        );
        assert_eq!(entry.data, frame, "kept as it is");
        // Not a chat line, or cut short: nothing.
        assert!(entry_of(&[0x0a, 0x05, b'l']).is_none());
        assert!(entry_of(&[0x0b]).is_none());
        assert!(entry_of(&[]).is_none(), "no room");
    }

    /// The entry of a frame with `payload`.
    fn entry_of(payload: &[u8]) -> Option<LogEntry> {
        let mut frame = ((payload.len() + protocol::HEADER_LEN) as u16)
            .to_le_bytes()
            .to_vec();
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        entry(Bytes::from(frame))
    }
}
