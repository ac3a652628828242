//! The floor under a server's CPU per delivery on this machine's loopback TCP: a null server
//! of the world server's shape and nothing else. It holds `--conns` connections; every tick
//! (`--tick-ms`) it writes each of them one vectored write of `--frames` frames of
//! `--frame-bytes` bytes (one buffer, encoded once), and it reads what they send; no decoding,
//! no routing, no world. Its peers (a second process, as the bots are) send each connection a
//! frame every `--line-ms` and read everything. It prints the null server's CPU (user and
//! system) per delivery and the peers' CPU: what one write per session per tick costs here
//! before any of the server's own work. Its last line is the same figures in JSON.
//!
//! ```text
//! cargo run --release -p net --example floor -- --conns 5000 --frames 4 --frame-bytes 80
//! ```
//!
//! `scripts/bench.py --floor` runs it beside the server with the server's own figures (its
//! writes per delivery and bytes per write, from `/proc`).

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// What to run.
#[derive(Clone, Debug)]
struct Options {
    conns: usize,
    secs: u64,
    tick_ms: u64,
    frames: usize,
    frame_bytes: usize,
    line_ms: u64,
    line_bytes: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            conns: 5000,
            secs: 20,
            tick_ms: 50,
            frames: 4,
            frame_bytes: 80,
            line_ms: 250,
            line_bytes: 40,
        };
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let value = it.next().ok_or_else(|| format!("{key} needs a value"))?;
            let number = |v: &str| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{key}: {v:?} is not a positive whole number"))
            };
            match key.as_str() {
                "--conns" => o.conns = number(value)? as usize,
                "--secs" => o.secs = number(value)?,
                "--tick-ms" => o.tick_ms = number(value)?,
                "--frames" => o.frames = number(value)? as usize,
                "--frame-bytes" => o.frame_bytes = number(value)?.max(4) as usize,
                "--line-ms" => o.line_ms = number(value)?,
                "--line-bytes" => o.line_bytes = number(value)?.max(4) as usize,
                _ => return Err(format!("unknown option {key}")),
            }
        }
        Ok(o)
    }

    fn args(&self) -> Vec<String> {
        [
            ("--conns", self.conns as u64),
            ("--secs", self.secs),
            ("--tick-ms", self.tick_ms),
            ("--frames", self.frames as u64),
            ("--frame-bytes", self.frame_bytes as u64),
            ("--line-ms", self.line_ms),
            ("--line-bytes", self.line_bytes as u64),
        ]
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("peers") => args
            .get(1)
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .ok_or_else(|| "peers ADDR:PORT [options]".to_string())
            .and_then(|addr| Ok((addr, Options::parse(&args[2..])?)))
            .and_then(|(addr, o)| peers(addr, &o).map_err(|e| e.to_string())),
        _ => Options::parse(&args).and_then(|o| serve(&o).map_err(|e| e.to_string())),
    };
    if let Err(e) = result {
        eprintln!("floor: {e}");
        eprintln!(
            "usage: floor [--conns N] [--secs S] [--tick-ms MS] [--frames N] [--frame-bytes B] \
             [--line-ms MS] [--line-bytes B]"
        );
        std::process::exit(2);
    }
}

/// A frame of `len` bytes as the wire has it: size, id, payload.
fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![b'x'; len];
    f[..2].copy_from_slice(&(len as u16).to_le_bytes());
    f[2..4].copy_from_slice(&1001u16.to_le_bytes());
    f
}

/// (user, system) CPU seconds.
type Cpu = (f64, f64);

/// The CPU time of process `pid` so far, from /proc (USER_HZ is 100 on Linux).
fn cpu(pid: u32) -> io::Result<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => Ok((u / 100.0, s / 100.0)),
        _ => Err(io::Error::other("unreadable /proc stat")),
    }
}

/// Reads what `stream` has; the bytes read, or `None` once it ended.
fn drain(stream: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    let mut total = 0;
    loop {
        match stream.read(buf) {
            Ok(0) => return None,
            // Less than asked for: the socket is drained; the next edge says when more comes.
            Ok(n) if n < buf.len() => return Some(total + n),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// The null server: accepts, then writes and reads as the options say; prints its figures.
fn serve(o: &Options) -> io::Result<()> {
    let std_listener = StdListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new()?;
    const LISTENER: Token = Token(usize::MAX);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut child: Child = Command::new(std::env::current_exe()?)
        .arg("peers")
        .arg(addr.to_string())
        .args(o.args())
        .spawn()?;
    let mut conns: Vec<TcpStream> = Vec::with_capacity(o.conns);
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    // Connections may come slowly (a kernel with many ports in use looks long for a free
    // one): only a wait with none at all ends it.
    let mut last_came = Instant::now();
    while conns.len() < o.conns {
        if last_came.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err(io::Error::other(format!(
                "only {} of {} connections came",
                conns.len(),
                o.conns
            )));
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nodelay(true)?;
                    poll.registry().register(
                        &mut stream,
                        Token(conns.len()),
                        Interest::READABLE,
                    )?;
                    conns.push(stream);
                    last_came = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    let batch = frame(o.frame_bytes);
    let slices: Vec<IoSlice<'_>> = (0..o.frames).map(|_| IoSlice::new(&batch)).collect();
    let tick = Duration::from_millis(o.tick_ms);
    let warm_up = Duration::from_secs(2);
    let started = Instant::now();
    let mut next_tick = started + tick;
    // Since when, and the CPU time of this process and of the peers then.
    let mut measuring: Option<(Instant, Cpu, Cpu)> = None;
    let (mut writes, mut short_writes, mut reads, mut bytes_in) = (0u64, 0u64, 0u64, 0u64);
    let end = started + warm_up + Duration::from_secs(o.secs);
    loop {
        let now = Instant::now();
        if now >= next_tick {
            if measuring.is_none() && now >= started + warm_up {
                measuring = Some((now, cpu(std::process::id())?, cpu(child.id())?));
                (writes, short_writes, reads, bytes_in) = (0, 0, 0, 0);
            }
            if now >= end {
                break;
            }
            for stream in &mut conns {
                // As the server writes: sendmsg, straight to the kernel.
                match (&*socket2::SockRef::from(&*stream)).write_vectored(&slices) {
                    Ok(n) if n == batch.len() * o.frames => writes += 1,
                    Ok(_) | Err(_) => short_writes += 1,
                }
            }
            next_tick += tick;
        }
        let wait = next_tick.saturating_duration_since(Instant::now());
        poll.poll(&mut events, Some(wait))?;
        for event in events.iter() {
            if event.token() == LISTENER {
                continue;
            }
            if let Some(stream) = conns.get_mut(event.token().0) {
                reads += 1;
                bytes_in += drain(stream, &mut buf).unwrap_or(0) as u64;
            }
        }
    }
    let (since, own_before, peers_before) = measuring.expect("the run outlasts its warm-up");
    let wall = since.elapsed().as_secs_f64();
    let (own_after, peers_after) = (cpu(std::process::id())?, cpu(child.id())?);
    let _ = child.kill();
    let _ = child.wait();
    let deliveries = writes as f64 * o.frames as f64;
    let (user, sys) = (own_after.0 - own_before.0, own_after.1 - own_before.1);
    let peers_cpu = (peers_after.0 - peers_before.0) + (peers_after.1 - peers_before.1);
    let per = |secs: f64| secs * 1e6 / deliveries.max(1.0);
    println!(
        "floor: {} connections, {} frames of {} bytes per write every {} ms, a {}-byte frame from each every {} ms, {:.0} s",
        o.conns, o.frames, o.frame_bytes, o.tick_ms, o.line_bytes, o.line_ms, wall
    );
    println!(
        "floor: deliveries/s {:.0}  writes/s {:.0} (short {short_writes})  reads/s {:.0}  bytes in/s {:.0}",
        deliveries / wall,
        writes as f64 / wall,
        reads as f64 / wall,
        bytes_in as f64 / wall
    );
    println!(
        "floor: null server CPU {:.1}% (user {:.2} s, sys {:.2} s): {:.3} µs per delivery (user {:.3}, sys {:.3}); peers CPU {:.1}%",
        100.0 * (user + sys) / wall,
        user,
        sys,
        per(user + sys),
        per(user),
        per(sys),
        100.0 * peers_cpu / wall
    );
    // The same, for scripts.
    println!(
        "{{\"conns\":{},\"frames_per_write\":{},\"frame_bytes\":{},\"deliveries_per_sec\":{:.0},\"short_writes\":{short_writes},\"cpu_percent\":{:.1},\"cpu_user_secs\":{user:.2},\"cpu_sys_secs\":{sys:.2},\"us_per_delivery\":{:.3},\"us_user_per_delivery\":{:.3},\"us_sys_per_delivery\":{:.3},\"peers_cpu_percent\":{:.1}}}",
        o.conns,
        o.frames,
        o.frame_bytes,
        deliveries / wall,
        100.0 * (user + sys) / wall,
        per(user + sys),
        per(user),
        per(sys),
        100.0 * peers_cpu / wall
    );
    Ok(())
}

/// The peers: `o.conns` connections to `addr`, each sending a frame every `o.line_ms` and
/// reading everything, until the null server ends them.
fn peers(addr: SocketAddr, o: &Options) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        let stream = StdStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| io::Error::new(e.kind(), format!("connection {i}: {e}")))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        conns.push(stream);
    }
    let line = frame(o.line_bytes);
    let period = Duration::from_millis(o.line_ms);
    let start = Instant::now();
    // Spread evenly over a period, as bots started over time are.
    let mut due: Vec<Instant> = (0..o.conns)
        .map(|i| start + period.mul_f64(i as f64 / o.conns as f64))
        .collect();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut open = o.conns;
    let mut next = 0usize; // the connection whose line is due first (due times stay in order)
    while open > 0 {
        let wait = due[next].saturating_duration_since(Instant::now());
        poll.poll(&mut events, Some(wait.min(Duration::from_millis(10))))?;
        for event in events.iter() {
            let stream = &mut conns[event.token().0];
            if drain(stream, &mut buf).is_none() {
                let _ = poll.registry().deregister(stream);
                open -= 1;
            }
        }
        let now = Instant::now();
        while due[next] <= now {
            let _ = conns[next].write(&line);
            due[next] += period;
            next = (next + 1) % o.conns;
        }
    }
    Ok(())
}
