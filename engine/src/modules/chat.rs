//! Room chat and whispers. A module: a game with rooms ([`RoomsGame`], and
//! [`crate::modules::rooms::RoomsModule`] added) opts into it by adding [`ChatModule`].

use bytes::Bytes;
use protocol::world::{C2sChat, C2sWhisper, S2cChat, S2cWhisper};
use protocol::ErrorCode;

use crate::cluster::Kind;
use crate::dispatcher::{Ctx, DispatchError, HandlerError};
use crate::handlers::{check_content, check_username};
use crate::modules::rooms::cluster::{RoomFrame, Said};
use crate::modules::rooms::RoomsGame;
use crate::world::{Module, Setup, World};

/// The chat module: C2S_Chat (a line to a room's members, on every node, kept in its
/// history) and C2S_Whisper (a line to one user, on whichever node).
pub struct ChatModule;

/// The module's name, which its events to other nodes carry.
pub const MODULE: &str = "chat";

impl<G: RoomsGame> Module<G> for ChatModule {
    fn build(self, setup: &mut Setup<G>) -> Result<(), DispatchError> {
        setup.register::<C2sChat>(say)?;
        setup.register::<C2sWhisper>(whisper)?;
        setup.on_cluster_event(cluster_event);
        Ok(())
    }
}

/// A whisper for a user of the receiving node: the payload of the module's events.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Whisper {
    /// The receiver's username.
    #[prost(string, tag = "1")]
    pub to: String,
    /// The encoded S2C_Whisper frame, delivered as it is.
    #[prost(bytes = "bytes", tag = "2")]
    pub frame: Bytes,
}

/// Hook: a whisper from another node, for a user of this one (any other event is handed
/// back).
fn cluster_event<G: RoomsGame>(
    world: &mut World<G>,
    from: &str,
    event: Kind,
    _: std::time::Instant,
) -> Option<Kind> {
    let payload = match event.payload_of(MODULE) {
        Ok(payload) => payload,
        Err(other) => return Some(other),
    };
    match <Whisper as prost::Message>::decode(payload) {
        Ok(whisper) => {
            if let Some(session) = world.session_of(&whisper.to) {
                world.out.push(session, whisper.frame);
            }
        }
        Err(e) => spdlog::warn!("cluster: a whisper from node {from} does not decode: {e}"),
    }
    None
}

/// A chat line goes to every member of the room, the sender included, encoded once.
fn say<G: RoomsGame>(
    world: &mut World<G>,
    ctx: &Ctx,
    request: C2sChat,
) -> Result<(), HandlerError> {
    let rooms = world.game.rooms();
    check_content(&request.content, rooms.config.max_chat_len)?;
    rooms.room_of_member(ctx.session, &request.room)?;
    let server_time_us = match world.game.rooms_mut().rooms.get_mut(&request.room) {
        Some(room) => room.line_time(ctx.now_us),
        None => ctx.now_us,
    };
    let from = world
        .login(ctx.session)
        .expect("dispatch checked the login")
        .username
        .clone();
    let line = S2cChat {
        room: request.room,
        from,
        content: request.content,
        sent_at_us: request.sent_at_us,
        server_time_us,
        history: false,
    };
    world.stats.chat_in += 1;
    let Some(frame) = world.out.encode(&line) else {
        return Err(HandlerError::new(
            ErrorCode::Internal,
            "chat line does not fit in a frame",
        ));
    };
    crate::modules::rooms::fan_out(world, &line.room, &frame, |room, frame| {
        Said::Line(RoomFrame { room, frame })
    });
    let rooms = world.game.rooms_mut();
    let keep = rooms.config.history_lines;
    let Some(room) = rooms.rooms.get_mut(&line.room) else {
        return Ok(());
    };
    if keep > 0 {
        // A copy of its own, shared by the room and the write queue: the frame's buffer is
        // shared with the rest of this tick's frames, which neither a long-kept history line
        // nor a line waiting behind a slow disk may hold on to.
        let stored = Bytes::copy_from_slice(&frame);
        room.history.push_back(stored.clone());
        if room.history.len() > keep {
            room.history.pop_front();
        }
        rooms.pending_history.push(stored);
    }
    Ok(())
}

/// Where a whisper goes: a session of this node, or the other node that has the name.
enum Target {
    Here(net::SessionId),
    There(String),
}

/// A whisper goes to the user logged in as `to` (on this node or another), and back to the
/// sender as an echo.
fn whisper<G: RoomsGame>(
    world: &mut World<G>,
    ctx: &Ctx,
    request: C2sWhisper,
) -> Result<(), HandlerError> {
    check_username(&request.to)?;
    check_content(&request.content, world.game.rooms().config.max_chat_len)?;
    let target = match world.session_of(&request.to) {
        Some(session) => Target::Here(session),
        None => match world.cluster.as_ref().and_then(|c| c.node_of(&request.to)) {
            Some(node) => Target::There(node.to_string()),
            None => {
                return Err(HandlerError::new(
                    ErrorCode::UserOffline,
                    format!("{} is not logged in", request.to),
                ))
            }
        },
    };
    let from = world
        .login(ctx.session)
        .expect("dispatch checked the login")
        .username
        .clone();
    let to = match &target {
        Target::Here(session) => world.login(*session).map(|l| l.username.clone()),
        Target::There(_) => None,
    }
    .unwrap_or_else(|| request.to.clone());
    let line = S2cWhisper {
        from,
        to,
        content: request.content,
        sent_at_us: request.sent_at_us,
    };
    world.stats.chat_in += 1;
    let Some(frame) = world.out.encode(&line) else {
        return Err(HandlerError::new(
            ErrorCode::Internal,
            "whisper does not fit in a frame",
        ));
    };
    match target {
        Target::Here(session) => {
            world.out.push(session, frame.clone());
            if session == ctx.session {
                return Ok(()); // to oneself: once
            }
        }
        Target::There(node) => {
            if let Some(cluster) = world.cluster.as_mut() {
                let whisper = Whisper {
                    to: request.to,
                    frame: frame.clone(),
                };
                let payload = Bytes::from(prost::Message::encode_to_vec(&whisper));
                cluster.send_module(Some(&node), MODULE, payload);
            }
        }
    }
    world.out.push(ctx.session, frame);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::testkit::Harness;
    use crate::modules::rooms::RoomsConfig;
    use net::SessionId;
    use protocol::world::C2sRoomJoin;
    use protocol::{MessageType, S2cMessage};

    fn chat(room: &str, content: &str, sent_at_us: u64) -> C2sChat {
        C2sChat {
            room: room.into(),
            content: content.into(),
            sent_at_us,
        }
    }

    fn room_of(h: &mut Harness, names: &[&str]) -> Vec<SessionId> {
        let ids: Vec<SessionId> = names.iter().map(|n| h.guest(n)).collect();
        for &id in &ids {
            h.send(
                id,
                C2sRoomJoin {
                    room: "lobby".into(),
                    ..Default::default()
                },
            );
        }
        for &id in &ids {
            h.take(id);
        }
        ids
    }

    #[test]
    fn chat_reaches_every_member_including_the_sender_with_sent_at_untouched() {
        let mut h = Harness::new();
        let ids = room_of(&mut h, &["alice", "bob", "carol"]);
        let outsider = h.guest("dave");
        h.send(ids[1], chat("lobby", "hello", 777));
        for &id in &ids {
            match h.take(id).as_slice() {
                [S2cMessage::S2cChat(c)] => {
                    assert_eq!(
                        (c.room.as_str(), c.from.as_str(), c.content.as_str()),
                        ("lobby", "bob", "hello")
                    );
                    assert_eq!(c.sent_at_us, 777);
                    assert!(c.server_time_us > 0);
                    assert!(!c.history);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(h.take(outsider).is_empty());
    }

    #[test]
    fn chat_is_encoded_once_and_shared_by_all_receivers() {
        let mut h = Harness::new();
        let ids = room_of(&mut h, &["alice", "bob", "carol"]);
        h.send(ids[0], chat("lobby", "shared", 1));
        let frames: Vec<bytes::Bytes> = ids
            .iter()
            .flat_map(|&id| h.sim.take_all(id))
            .map(|(_, payload)| payload)
            .collect();
        assert_eq!(frames.len(), 3);
        assert!(
            frames.iter().all(|f| f.as_ptr() == frames[0].as_ptr()),
            "one buffer for all"
        );
    }

    #[test]
    fn chat_keeps_per_sender_order() {
        let mut h = Harness::new();
        let ids = room_of(&mut h, &["alice", "bob"]);
        for i in 0..50 {
            h.send(ids[0], chat("lobby", &format!("line {i}"), i));
        }
        let seen: Vec<u64> = h
            .take(ids[1])
            .into_iter()
            .map(|m| match m {
                S2cMessage::S2cChat(c) => c.sent_at_us,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seen, (0..50).collect::<Vec<u64>>());
    }

    #[test]
    fn chat_in_a_room_one_is_not_in_answers_not_in_room() {
        let mut h = Harness::new();
        room_of(&mut h, &["alice"]);
        let b = h.guest("bob");
        h.send(b, chat("lobby", "let me in", 0));
        let (code, request, _) = h.error(b);
        assert_eq!((code, request), (ErrorCode::NotInRoom, C2sChat::ID as u32));
    }

    #[test]
    fn chat_content_over_the_limit_or_empty_answers_bad_request() {
        let mut h = Harness::with_rooms(RoomsConfig {
            max_chat_len: 10,
            ..RoomsConfig::default()
        });
        let ids = room_of(&mut h, &["alice", "bob"]);
        h.send(ids[0], chat("lobby", "12345678901", 0));
        let (code, _, reason) = h.error(ids[0]);
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(reason.contains("11 bytes"), "{reason}");
        h.send(ids[0], chat("lobby", "", 0));
        assert_eq!(h.error(ids[0]).0, ErrorCode::BadRequest);
        h.send(ids[0], chat("lobby", "1234567890", 0));
        assert!(matches!(
            h.take(ids[1]).as_slice(),
            [S2cMessage::S2cChat(_)]
        ));
    }

    #[test]
    fn whisper_reaches_the_target_and_echoes_to_the_sender() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        let b = h.guest("bob");
        let c = h.guest("carol");
        h.send(
            a,
            C2sWhisper {
                to: "BOB".into(),
                content: "psst".into(),
                sent_at_us: 5,
            },
        );
        for id in [a, b] {
            match h.take(id).as_slice() {
                [S2cMessage::S2cWhisper(w)] => {
                    assert_eq!(
                        (
                            w.from.as_str(),
                            w.to.as_str(),
                            w.content.as_str(),
                            w.sent_at_us
                        ),
                        ("alice", "bob", "psst", 5)
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(h.take(c).is_empty());
    }

    #[test]
    fn whisper_to_someone_not_logged_in_answers_user_offline() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        h.send(
            a,
            C2sWhisper {
                to: "nobody".into(),
                content: "hello?".into(),
                sent_at_us: 0,
            },
        );
        let (code, request, reason) = h.error(a);
        assert_eq!(
            (code, request),
            (ErrorCode::UserOffline, C2sWhisper::ID as u32)
        );
        assert!(reason.contains("nobody"));
    }

    fn live_and_history(h: &mut Harness, s: SessionId) -> Vec<(String, bool)> {
        h.take(s)
            .into_iter()
            .filter_map(|m| match m {
                S2cMessage::S2cChat(c) => Some((c.content, c.history)),
                _ => None,
            })
            .collect()
    }

    /// A lobby keeping 3 lines of history, and alice in it, who said "line 0" to "line 4".
    fn alice_said_five_lines_in_a_lobby_keeping_three() -> (Harness, Vec<SessionId>) {
        let mut h = Harness::with_rooms(RoomsConfig {
            history_lines: 3,
            ..RoomsConfig::default()
        });
        let ids = room_of(&mut h, &["alice"]);
        for i in 0..5 {
            h.send(ids[0], chat("lobby", &format!("line {i}"), i));
        }
        (h, ids)
    }

    #[test]
    fn joiner_gets_the_last_lines_marked_history_oldest_first_then_live_chat() {
        let (mut h, ids) = alice_said_five_lines_in_a_lobby_keeping_three();
        h.take(ids[0]);
        let b = h.guest("bob");
        h.send(
            b,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        let got = h.take(b);
        assert!(matches!(got[0], S2cMessage::S2cRoomJoined(_)), "{got:?}");
        let lines: Vec<(String, u64, bool)> = got[1..]
            .iter()
            .map(|m| match m {
                S2cMessage::S2cChat(c) => (c.content.clone(), c.sent_at_us, c.history),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                ("line 2".into(), 2, true),
                ("line 3".into(), 3, true),
                ("line 4".into(), 4, true)
            ]
        );
        h.send(ids[0], chat("lobby", "live", 9));
        assert_eq!(
            live_and_history(&mut h, b),
            vec![("live".to_string(), false)]
        );
    }

    #[test]
    fn a_join_since_a_time_gets_only_the_later_lines_and_is_told_when_some_are_gone() {
        let (mut h, ids) = alice_said_five_lines_in_a_lobby_keeping_three();
        let said: Vec<u64> = h
            .take(ids[0])
            .into_iter()
            .filter_map(|m| match m {
                S2cMessage::S2cChat(c) => Some(c.server_time_us),
                _ => None,
            })
            .collect();
        assert_eq!(said.len(), 5);
        let join_since = |h: &mut Harness, name: &str, since_us: u64| {
            let s = h.guest(name);
            h.send(
                s,
                C2sRoomJoin {
                    room: "lobby".into(),
                    since_us,
                },
            );
            h.take(s)
                .into_iter()
                .map(|m| match m {
                    S2cMessage::S2cRoomJoined(_) => "joined".to_string(),
                    S2cMessage::S2cRoomMissed(m) => format!("missed {}", m.room),
                    S2cMessage::S2cChat(c) if c.history => c.content,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        // Had line 0: lines 1 to 4 were said since, and line 1 is no longer kept.
        assert_eq!(
            join_since(&mut h, "bob", said[0]),
            ["joined", "missed lobby", "line 2", "line 3", "line 4"]
        );
        // Had line 2: lines 3 and 4, all there.
        assert_eq!(
            join_since(&mut h, "carol", said[2]),
            ["joined", "line 3", "line 4"]
        );
        // Had everything: nothing.
        assert_eq!(join_since(&mut h, "dave", said[4]), ["joined"]);
        // A join refused keeps nothing of its `since` for the next.
        assert!(h
            .world()
            .game
            .rooms
            .members
            .values()
            .all(|m| m.since.is_empty()));
    }

    #[test]
    fn history_survives_the_room_emptying_through_the_database() {
        let mut h = Harness::new();
        let ids = room_of(&mut h, &["alice"]);
        h.send(ids[0], chat("lobby", "remember me", 1));
        h.send(
            ids[0],
            protocol::world::C2sRoomLeave {
                room: "lobby".into(),
            },
        );
        assert!(h.world_mut().game.rooms.rooms.is_empty());
        let b = h.guest("bob");
        h.send(
            b,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            live_and_history(&mut h, b),
            vec![("remember me".to_string(), true)]
        );
    }

    #[test]
    fn history_lines_zero_turns_history_off() {
        let mut h = Harness::with_rooms(RoomsConfig {
            history_lines: 0,
            ..RoomsConfig::default()
        });
        let ids = room_of(&mut h, &["alice"]);
        h.send(ids[0], chat("lobby", "gone", 1));
        let b = h.guest("bob");
        h.send(
            b,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        assert!(live_and_history(&mut h, b).is_empty());
        assert!(h.world_mut().game.rooms.pending_history.is_empty());
    }

    /// How many write jobs of the rooms module the held database has.
    fn held_writes(h: &Harness) -> usize {
        h.held_db()
            .into_iter()
            .filter(
                |job| matches!(job, crate::db::DbJob::Module(m) if m.module == "rooms" && m.write),
            )
            .count()
    }

    #[test]
    fn chat_lines_of_a_tick_go_to_the_database_as_one_batch() {
        let mut h = Harness::new();
        let ids = room_of(&mut h, &["alice", "bob"]);
        h.sim.hold_db(true);
        for i in 0..10 {
            h.sim
                .send(ids[i % 2], &chat("lobby", &format!("l{i}"), i as u64));
        }
        h.settle();
        assert_eq!(held_writes(&h), 1, "one write for the tick");
        assert!(h.world().game.rooms.pending_history.is_empty());
        // All ten lines were in it: the room empties, and a new member's join reads them back.
        h.sim.hold_db(false);
        h.run_db();
        for &id in &ids {
            h.send(
                id,
                protocol::world::C2sRoomLeave {
                    room: "lobby".into(),
                },
            );
        }
        assert!(h.world().game.rooms.rooms.is_empty());
        let cyd = h.guest("cyd");
        h.send(
            cyd,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        assert_eq!(live_and_history(&mut h, cyd).len(), 10);
    }

    #[test]
    fn lines_kept_for_history_hold_no_part_of_the_ticks_frames() {
        let mut h = Harness::new();
        let ids = room_of(&mut h, &["alice", "bob"]);
        h.sim.hold_db(true);
        h.send(ids[0], chat("lobby", "kept for the disk", 1));
        assert_eq!(held_writes(&h), 1, "the line goes to the database");
        let (_, delivered) = h.sim.take_all(ids[1]).pop().expect("the line");
        // The write held for the database has a handle on the room's copy: let it go.
        drop(h.sim.take_held_db());
        // The room's copy, which is also the one given to the database: a buffer of its own,
        // not a part of the tick's arena (which the delivered frame, and the arena itself for
        // the rest of its chunk, would share).
        let room = &h.world().game.rooms.rooms["lobby"];
        let kept = room.history.back().expect("kept in memory");
        assert!(!delivered.is_unique(), "the tick's frames share its arena");
        assert!(
            kept.is_unique(),
            "a line kept for history shares a buffer with the tick's frames"
        );
        assert_eq!(&kept[protocol::HEADER_LEN..], &delivered[..]);
    }

    #[test]
    fn a_room_emptied_and_rejoined_within_one_tick_keeps_that_ticks_lines() {
        let mut h = Harness::new();
        let ids = room_of(&mut h, &["alice"]);
        // No flush_writes between these: they all happen in one tick.
        h.send(ids[0], chat("lobby", "said and gone", 1));
        h.send(
            ids[0],
            protocol::world::C2sRoomLeave {
                room: "lobby".into(),
            },
        );
        let b = h.guest("bob");
        h.send(
            b,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            live_and_history(&mut h, b),
            vec![("said and gone".to_string(), true)]
        );
    }
}
