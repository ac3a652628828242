//! Modules combine, and a game writes one of its own, through the public API alone: a game
//! with the engine's rooms and chat and a module of its own, `visits`, which counts each
//! player's logins in its own records (DB jobs on the storage's module data), tells the other
//! nodes of the cluster (its own cluster events), answers a message of its own, and keeps a
//! timer; run on one node and on two with `engine::testing`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::cluster::Kind;
use engine::db::{DbEvent, DbJob, ModuleJob};
use engine::modules::chat::ChatModule;
use engine::modules::rooms::{Rooms, RoomsConfig, RoomsGame, RoomsModule};
use engine::net::SessionId;
use engine::protocol::world::{C2sChat, C2sRoomJoin, S2cChat, S2cRoomJoined};
use engine::testing::{Nodes, Sim};
use engine::{Ctx, DispatchError, Game, HandlerError, Module, Setup, World};

/// `C2S_Visits`: how many times have I logged in? (A message of the module's own, declared
/// here as a game's `.proto` would declare it.)
#[derive(Clone, PartialEq, prost::Message)]
struct C2sVisits {}

impl engine::protocol::MessageType for C2sVisits {
    const ID: u16 = 2900;
    const NAME: &'static str = "C2S_Visits";
}
impl engine::protocol::ClientToServer for C2sVisits {}

/// `S2C_Visits`: the answer: my logins, on every node, and the logins other nodes told of.
#[derive(Clone, PartialEq, prost::Message)]
struct S2cVisits {
    #[prost(uint64, tag = "1")]
    mine: u64,
    #[prost(uint64, tag = "2")]
    elsewhere: u64,
}

impl engine::protocol::MessageType for S2cVisits {
    const ID: u16 = 1900;
    const NAME: &'static str = "S2C_Visits";
}
impl engine::protocol::ServerToClient for S2cVisits {}

/// The visits module's state, which a game keeps in its own.
#[derive(Default)]
struct Visits {
    /// Logins counted, by username, as the storage answered.
    counted: BTreeMap<String, u64>,
    /// Logins on other nodes, as they told.
    elsewhere: BTreeMap<String, u64>,
    /// How many times its timer ran.
    timer_runs: u64,
}

/// A game with the visits module keeps a [`Visits`].
trait VisitsGame: Game {
    fn visits(&mut self) -> &mut Visits;
}

/// The module: a game adds it with `setup.add(VisitsModule)`.
struct VisitsModule;

/// Its name: in its records, its DB answers and its cluster events.
const VISITS: &str = "visits";

impl<G: VisitsGame> Module<G> for VisitsModule {
    fn build(self, setup: &mut Setup<G>) -> Result<(), DispatchError> {
        setup.register::<C2sVisits>(ask)?;
        setup
            .on_logged_in(count_login)
            .on_db_answer(counted)
            .on_cluster_event(told)
            .every(
                Duration::from_secs(1),
                |world: &mut World<G>, _: Instant| {
                    world.game.visits().timer_runs += 1;
                },
            );
        Ok(())
    }
}

/// A login: its count goes up by one in the module's records, in one job of the write lane.
fn count_login<G: VisitsGame>(world: &mut World<G>, session: SessionId) {
    let name = world.login(session).expect("logged in").username.clone();
    let job: DbJob = ModuleJob::write(VISITS, move |storage| {
        let before = storage
            .module_get(VISITS, &name)?
            .map_or(0, |v| u64::from_le_bytes(v.try_into().expect("8 bytes")));
        let now = before + 1;
        storage.module_put(VISITS, &name, &now.to_le_bytes())?;
        Ok(Some(Box::new((name.clone(), now))))
    });
    world.db.submit(job).expect("the write queue has room");
}

/// The storage's answer: noted here, and told to the other nodes.
fn counted<G: VisitsGame>(world: &mut World<G>, answer: DbEvent, _: Instant) -> Option<DbEvent> {
    let DbEvent::Module {
        module: VISITS,
        answer,
    } = answer
    else {
        return Some(answer);
    };
    let (name, count) = *answer.downcast::<(String, u64)>().expect("our own answer");
    let payload = Bytes::from(format!("{name}={count}"));
    world.game.visits().counted.insert(name, count);
    if let Some(cluster) = world.cluster.as_mut() {
        cluster.send_module(None, VISITS, payload);
    }
    None
}

/// Another node's event: a login counted there.
fn told<G: VisitsGame>(world: &mut World<G>, _: &str, event: Kind, _: Instant) -> Option<Kind> {
    let payload = match event.payload_of(VISITS) {
        Ok(payload) => payload,
        Err(other) => return Some(other),
    };
    let text = std::str::from_utf8(&payload).expect("utf-8");
    let (name, count) = text.split_once('=').expect("name=count");
    let count = count.parse().expect("a count");
    world
        .game
        .visits()
        .elsewhere
        .insert(name.to_string(), count);
    None
}

fn ask<G: VisitsGame>(world: &mut World<G>, ctx: &Ctx, _: C2sVisits) -> Result<(), HandlerError> {
    let name = world
        .login(ctx.session)
        .expect("logged in")
        .username
        .clone();
    let visits = world.game.visits();
    let answer = S2cVisits {
        mine: visits.counted.get(&name).copied().unwrap_or(0),
        elsewhere: visits.elsewhere.values().sum(),
    };
    world.out.send(ctx.session, &answer);
    Ok(())
}

/// The game: rooms, chat and visits.
struct Lounge {
    rooms: Rooms,
    visits: Visits,
}

impl Lounge {
    fn new() -> Lounge {
        Lounge {
            rooms: Rooms::new(RoomsConfig::default()),
            visits: Visits::default(),
        }
    }
}

impl RoomsGame for Lounge {
    fn rooms(&self) -> &Rooms {
        &self.rooms
    }
    fn rooms_mut(&mut self) -> &mut Rooms {
        &mut self.rooms
    }
}

impl VisitsGame for Lounge {
    fn visits(&mut self) -> &mut Visits {
        &mut self.visits
    }
}

impl Game for Lounge {
    fn register(setup: &mut Setup<Self>) -> Result<(), DispatchError> {
        setup.add(RoomsModule)?;
        setup.add(ChatModule)?;
        setup.add(VisitsModule)
    }
}

#[test]
fn rooms_chat_and_a_module_of_the_game_s_own_serve_one_game() {
    let mut sim = Sim::new(Lounge::new());
    let ann = sim.guest("ann");
    let bob = sim.guest("bob");
    for who in [ann, bob] {
        sim.send(
            who,
            &C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
    }
    // A room's history loads first: the join is answered the tick after.
    sim.step();
    sim.step();
    assert_eq!(sim.take::<S2cRoomJoined>(bob).len(), 1);
    let line = C2sChat {
        room: "lobby".into(),
        content: "hello".into(),
        sent_at_us: 0,
    };
    sim.send(ann, &line);
    sim.send(ann, &C2sVisits {});
    sim.step();
    assert_eq!(sim.take::<S2cChat>(bob)[0].content, "hello");
    let visits = sim.take::<S2cVisits>(ann);
    assert_eq!((visits[0].mine, visits[0].elsewhere), (1, 0));
}

#[test]
fn a_module_keeps_its_records_in_the_storage_across_logins() {
    let mut sim = Sim::new(Lounge::new());
    let ann = sim.guest("ann");
    sim.disconnect(ann);
    sim.step();
    let again = sim.guest("ann");
    sim.send(again, &C2sVisits {});
    sim.step();
    assert_eq!(sim.take::<S2cVisits>(again)[0].mine, 2);
    assert_eq!(sim.world().game.visits.counted["ann"], 2);
}

#[test]
fn a_module_s_timer_runs_on_its_period() {
    let mut sim = Sim::new(Lounge::new());
    sim.run_for(Duration::from_millis(3_050));
    assert_eq!(sim.world().game.visits.timer_runs, 3);
}

#[test]
fn a_module_s_events_cross_the_cluster_to_its_hook_on_the_other_node() {
    let mut nodes = Nodes::new([Lounge::new(), Lounge::new()]);
    nodes.guest(0, "ann");
    nodes.guest(0, "cyd");
    let bob = nodes.guest(1, "bob");
    nodes.settle();
    let node2 = &nodes.world(1).game.visits;
    assert_eq!(
        node2.elsewhere,
        BTreeMap::from([("ann".to_string(), 1), ("cyd".to_string(), 1)])
    );
    assert_eq!(node2.counted, BTreeMap::from([("bob".to_string(), 1)]));
    nodes.node(1).send(bob, &C2sVisits {});
    nodes.step();
    let visits = nodes.node(1).take::<S2cVisits>(bob);
    assert_eq!((visits[0].mine, visits[0].elsewhere), (1, 2));
    // And the rooms module's own events still reach the rooms on the other node.
    let ann_on_1 = nodes.world(0).session_of("ann").unwrap();
    nodes.node(0).send(
        ann_on_1,
        &C2sRoomJoin {
            room: "lobby".into(),
            ..Default::default()
        },
    );
    nodes.node(1).send(
        bob,
        &C2sRoomJoin {
            room: "lobby".into(),
            ..Default::default()
        },
    );
    nodes.settle();
    let line = C2sChat {
        room: "lobby".into(),
        content: "across".into(),
        sent_at_us: 0,
    };
    nodes.node(0).send(ann_on_1, &line);
    nodes.settle();
    assert_eq!(nodes.node(1).take::<S2cChat>(bob)[0].content, "across");
}
