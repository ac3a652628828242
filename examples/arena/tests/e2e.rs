//! The arena over real sockets: the engine's driver, a listener on 127.0.0.1:0, raw clients
//! that speak the frames by hand.

use std::time::Duration;

use arena::arena::{C2sMove, S2cSpawned, S2cUpdate};
use arena::{Arena, ArenaConfig, S2cMessage};
use bytes::{Buf, BytesMut};
use engine::protocol::world::{C2sLogin, S2cAuthResult};
use engine::protocol::{ClientToServer, S2cMessage as EngineMessage};
use engine::storage::MemoryStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

enum Frame {
    Engine(EngineMessage),
    Arena(S2cMessage),
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        Client {
            stream,
            buf: BytesMut::new(),
        }
    }

    async fn send<M: ClientToServer>(&mut self, message: &M) {
        let frame = engine::protocol::frame(message).unwrap();
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next frame, or `None` when the server closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 4 {
                let size = u16::from_le_bytes([self.buf[0], self.buf[1]]) as usize;
                if self.buf.len() >= size {
                    let id = u16::from_le_bytes([self.buf[2], self.buf[3]]);
                    let mut frame = self.buf.split_to(size);
                    frame.advance(4);
                    let payload = frame.freeze();
                    return Some(match S2cMessage::decode(id, payload.clone()) {
                        Ok(m) => Frame::Arena(m),
                        Err(_) => Frame::Engine(EngineMessage::decode(id, payload).unwrap()),
                    });
                }
            }
            let n = timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a frame in time")
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }

    /// Logs in as the guest `name`: the answer, then the spawn.
    async fn login(&mut self, name: &str) -> S2cSpawned {
        assert!(matches!(
            self.next().await,
            Some(Frame::Engine(EngineMessage::S2cWelcome(_)))
        ));
        self.send(&C2sLogin {
            username: name.into(),
            password: String::new(),
            ..Default::default()
        })
        .await;
        let auth: Option<S2cAuthResult> = match self.next().await {
            Some(Frame::Engine(EngineMessage::S2cAuthResult(a))) => Some(a),
            _ => None,
        };
        assert_eq!(auth.expect("S2C_AuthResult first").username, name);
        match self.next().await {
            Some(Frame::Arena(S2cMessage::S2cSpawned(s))) => s,
            _ => panic!("S2C_Spawned after the login"),
        }
    }

    async fn update(&mut self) -> S2cUpdate {
        loop {
            match self.next().await {
                Some(Frame::Arena(S2cMessage::S2cUpdate(u))) => return u,
                Some(_) => {}
                None => panic!("closed"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_over_sockets_see_each_other_move_and_go() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = config::ServerConfig::default();
    config.server.tick_ms = 10;
    config.web.listen = String::new();
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    let storage = Box::new(MemoryStorage::new());
    // A world small enough that everyone sees everyone.
    let game = Arena::new(ArenaConfig {
        world_size: 30.0,
        view_radius: 50.0,
        speed: 100.0,
        ..ArenaConfig::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(engine::run_game(listener, config, game, storage, async {
        let _ = stopped.await;
    }));

    let mut ann = Client::connect(addr).await;
    let spawned = ann.login("ann").await;
    assert_eq!(spawned.world_size, 30.0);
    let mut bob = Client::connect(addr).await;
    let bob_id = bob.login("bob").await.entity;

    // Ann sees bob come into view, with his name, once.
    let mut entered = 0;
    loop {
        let u = ann.update().await;
        entered += u
            .entered
            .iter()
            .filter(|e| e.id == bob_id && e.name == "bob")
            .count();
        if u.entities.iter().any(|e| e.id == bob_id) {
            break;
        }
    }
    assert_eq!(entered, 1);

    // Bob walks; ann sees him move, and bob's updates echo the move once applied.
    bob.send(&C2sMove {
        dx: 1.0,
        dy: 0.0,
        sent_at_us: 424242,
    })
    .await;
    loop {
        if bob.update().await.move_sent_at_us == 424242 {
            break;
        }
    }
    let first = ann.update().await;
    let x0 = first.entities.iter().find(|e| e.id == bob_id).unwrap().x;
    let mut moved = false;
    for _ in 0..100 {
        let u = ann.update().await;
        let x = u.entities.iter().find(|e| e.id == bob_id).map(|e| e.x);
        if x.is_some_and(|x| x != x0) {
            moved = true;
            break;
        }
    }
    assert!(moved || x0 > 29.0, "bob's moves reach ann");

    // Bob goes: ann is told he left.
    drop(bob);
    let mut left = false;
    for _ in 0..200 {
        let u = ann.update().await;
        if u.left.contains(&bob_id) {
            assert!(u.entities.iter().all(|e| e.id != bob_id));
            left = true;
            break;
        }
    }
    assert!(left);

    let _ = stop.send(());
    let stats = timeout(WAIT, server).await.unwrap().unwrap().unwrap();
    assert!(stats.ticks > 0);
}
