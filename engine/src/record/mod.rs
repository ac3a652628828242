//! Record and replay: every input the core takes, with its tick and time, written to segment
//! files (`world-server --record DIR`), and run through a new core again (`world-server replay
//! DIR`), which compares each tick's output with what the recording says it was.
//!
//! The core decides everything from its inputs and the time it is given ([`crate::core`]);
//! the order its maps iterate in comes from the process's hash keys, which the recording keeps
//! ([`crate::hash`]). So a recording and the configuration it starts with are the whole run:
//! the replay sends the same frames to the same sessions in the same order, tick by tick, and
//! the first tick that does not (a changed build, a changed configuration, a bug that depends
//! on something else) is named, with what differs.
//!
//! # Files
//!
//! A recording is a directory of segments, `000000.rec`, `000001.rec`, ..., each at most
//! [`SEGMENT_BYTES`], the whole at most `--record-max-mib`. A segment is the magic `WREC`, the
//! format version and its number (4 bytes each, little-endian), then records: a length and a
//! CRC-32 of the record (4 bytes each), and the record. The first record is the header: the
//! game, the configuration as TOML, the hash keys and the cluster node. Then one record per
//! tick: its number, its time (from the start, and the wall clock), its inputs
//! ([`codec::put_input`]) and its output's [`Digest`]. The last says why the recording ended.
//!
//! A recording holds what the clients sent, passwords and tokens among them: its files are
//! the owner's only (like every file the server makes), to be kept like the database.
//!
//! # Cost
//!
//! The tick loop encodes its inputs (a copy of each frame received) and hashes its output;
//! a thread of its own writes. The queue to it is bounded ([`QUEUE_BYTES`]): when the disk
//! does not keep up, or a limit is reached, the recording stops (one line in the log says
//! why, and its last record) and the server goes on.

pub mod codec;

use std::fmt::Write as _;
use std::fs::File;
use std::hash::Hasher;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siphasher::sip::SipHasher13;

use crate::core::{Input, Output};
use crate::world::{Game, Now, World};
use codec::{put_str, put_var, AnswerCodec, Reader};

/// The segment files' format.
pub const FORMAT: u32 = 1;

/// The most bytes of one segment file: a new one starts past it.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// The most bytes of ticks waiting for the writer thread: past it the recording stops.
pub const QUEUE_BYTES: usize = 64 << 20;

/// The most bytes of one record a reader accepts.
const MAX_RECORD: usize = 1 << 30;

const MAGIC: &[u8; 4] = b"WREC";
const HEADER: u8 = 1;
const TICK: u8 = 2;
const END: u8 = 3;

/// Room kept under the bound for the end record (its reason cut to [`END_REASON_MAX`]), and
/// a segment header if it opens one: the bound holds with the end said.
const END_ROOM: u64 = 256;
const END_REASON_MAX: usize = 200;

/// The end record: after `ticks` ticks, because `why`.
fn end_record(ticks: u64, why: &str) -> Vec<u8> {
    let mut cut = why.len().min(END_REASON_MAX);
    while !why.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut end = vec![END];
    put_var(&mut end, ticks);
    put_str(&mut end, &why[..cut]);
    end
}

/// The kinds of output a [`Digest`] counts and hashes, in its order.
pub const OUTPUTS: [&str; 8] = [
    "opened", "refused", "batches", "closes", "credits", "bucket", "cluster", "db",
];

/// What a tick's output was: per kind ([`OUTPUTS`]), how many and a hash of them (frames'
/// bytes, sessions, reasons; a DB job as its debug form, which leaves out nothing it does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// How many of each kind.
    pub counts: [u64; 8],
    /// A hash of each kind.
    pub hashes: [u64; 8],
}

/// Feeds text into a hasher without making a string.
struct HashWriter<'a>(&'a mut SipHasher13);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.write(text.as_bytes());
        Ok(())
    }
}

impl Digest {
    /// The digest of `output`.
    pub fn of(output: &Output) -> Digest {
        let mut digest = Digest::default();
        let mut each = |kind: usize, count: usize, feed: &mut dyn FnMut(&mut SipHasher13)| {
            let mut hasher = SipHasher13::new_with_keys(0, 0);
            feed(&mut hasher);
            digest.counts[kind] = count as u64;
            digest.hashes[kind] = hasher.finish();
        };
        each(0, output.opened.len(), &mut |h| {
            for (token, session) in &output.opened {
                h.write_u64(*token);
                h.write_u64(session.0);
            }
        });
        each(1, output.refused.len(), &mut |h| {
            for refusal in &output.refused {
                h.write_u64(refusal.token);
                let _ = write!(HashWriter(h), "{} {}", refusal.peer, refusal.reason);
                h.write(&refusal.frame);
            }
        });
        each(2, output.batches.len(), &mut |h| {
            for (session, frames) in &output.batches {
                h.write_u64(session.0);
                h.write_usize(frames.len());
                for frame in frames {
                    h.write(frame);
                }
            }
        });
        each(3, output.closes.len(), &mut |h| {
            for (session, reason) in &output.closes {
                h.write_u64(session.0);
                let _ = write!(HashWriter(h), "{reason}");
            }
        });
        each(4, output.credits.len(), &mut |h| {
            for (session, credit) in &output.credits {
                h.write_u64(session.0);
                h.write_usize(*credit);
            }
        });
        each(5, output.bucket.len(), &mut |h| {
            for request in &output.bucket {
                let _ = write!(HashWriter(h), "{request:?}");
            }
        });
        each(6, output.cluster.len(), &mut |h| {
            for (subject, batch) in &output.cluster {
                h.write(subject.as_bytes());
                let _ = write!(HashWriter(h), "{batch:?}");
            }
        });
        each(7, output.db.len(), &mut |h| {
            for job in &output.db {
                let _ = write!(HashWriter(h), "{job:?}");
            }
        });
        digest
    }

    fn put(&self, out: &mut Vec<u8>) {
        for (count, hash) in self.counts.iter().zip(&self.hashes) {
            put_var(out, *count);
            out.extend_from_slice(&hash.to_le_bytes());
        }
    }

    fn read(r: &mut Reader) -> Result<Digest, String> {
        let mut digest = Digest::default();
        for kind in 0..OUTPUTS.len() {
            digest.counts[kind] = r.var()?;
            digest.hashes[kind] = r.u64()?;
        }
        Ok(digest)
    }
}

/// What a recording starts with: what a replay needs to build the same world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The game's name ([`Game::NAME`]).
    pub game: String,
    /// The engine's version that recorded.
    pub version: String,
    /// The configuration the server ran with, as TOML.
    pub config: String,
    /// The process's hash keys ([`crate::hash::keys`]).
    pub keys: (u64, u64),
    /// On a cluster: the node's name and incarnation.
    pub node: Option<(String, u64)>,
    /// The wall clock when the world was made, in µs since the Unix epoch.
    pub started_unix_us: u64,
}

impl Header {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(HEADER);
        put_str(out, &self.game);
        put_str(out, &self.version);
        put_str(out, &self.config);
        out.extend_from_slice(&self.keys.0.to_le_bytes());
        out.extend_from_slice(&self.keys.1.to_le_bytes());
        match &self.node {
            Some((node, incarnation)) => {
                out.push(1);
                put_str(out, node);
                out.extend_from_slice(&incarnation.to_le_bytes());
            }
            None => out.push(0),
        }
        put_var(out, self.started_unix_us);
    }

    fn read(r: &mut Reader) -> Result<Header, String> {
        Ok(Header {
            game: r.string()?,
            version: r.string()?,
            config: r.string()?,
            keys: (r.u64()?, r.u64()?),
            node: match r.u8()? {
                0 => None,
                _ => Some((r.string()?, r.u64()?)),
            },
            started_unix_us: r.var()?,
        })
    }
}

/// Where and how much a server records.
#[derive(Clone, Debug)]
pub struct RecordTo {
    /// The directory (made if missing; it must hold no segments yet).
    pub dir: PathBuf,
    /// The most bytes of all segments together: the recording stops there.
    pub max_bytes: u64,
}

/// The tick loop's side of a recording: encodes each tick and hands it to the writer thread.
pub struct Recorder {
    started: Instant,
    tick: u64,
    record: Vec<u8>,
    queue: Option<crossbeam_channel::Sender<Vec<u8>>>,
    queued: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    /// Starts a recording in `to.dir` of a world made at `started` that `header` describes.
    pub fn start(to: &RecordTo, header: &Header, started: Instant) -> Result<Recorder, String> {
        std::fs::create_dir_all(&to.dir)
            .map_err(|e| format!("cannot make {}: {e}", to.dir.display()))?;
        if !segments(&to.dir)?.is_empty() {
            return Err(format!(
                "{} holds a recording already: give each recording a directory of its own",
                to.dir.display()
            ));
        }
        let mut first = Vec::new();
        header.put(&mut first);
        let mut writer = SegmentWriter {
            dir: to.dir.clone(),
            number: 0,
            file: None,
            written: 0,
            total: 0,
            max_total: to.max_bytes,
            ticks: 0,
        };
        writer.write(&first)?;
        let (queue, ticks) = crossbeam_channel::unbounded::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let (in_queue, stop) = (queued.clone(), stopped.clone());
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || writer.run(ticks, &in_queue, &stop))
            .map_err(|e| format!("cannot start the recorder's thread: {e}"))?;
        spdlog::info!(
            "record: recording every input of the world to {} (at most {} MiB)",
            to.dir.display(),
            to.max_bytes >> 20
        );
        Ok(Recorder {
            started,
            tick: 0,
            record: Vec::new(),
            queue: Some(queue),
            queued,
            stopped,
            writer: Some(thread),
        })
    }

    /// Whether it still records.
    pub fn recording(&self) -> bool {
        self.queue.is_some() && !self.stopped.load(Ordering::Relaxed)
    }

    /// A tick at `now` takes `inputs`: written before the core takes them. Then
    /// [`Recorder::output`] with what the tick gave.
    pub fn inputs<G: Game>(&mut self, now: Now, inputs: &[Input], world: &World<G>) {
        if !self.recording() {
            return;
        }
        self.record.clear();
        self.record.push(TICK);
        put_var(&mut self.record, self.tick);
        let at = now.at.saturating_duration_since(self.started);
        put_var(&mut self.record, at.as_nanos() as u64);
        put_var(&mut self.record, now.unix_us);
        put_var(&mut self.record, inputs.len() as u64);
        let codecs = &world.hooks.answer_codecs;
        for input in inputs {
            if let Err(why) = codec::put_input(&mut self.record, input, codecs) {
                self.stop(&format!("tick {}: {why}", self.tick));
                return;
            }
        }
    }

    /// What the tick of the last [`Recorder::inputs`] gave: the tick's record goes to the
    /// writer.
    pub fn output(&mut self, output: &Output) {
        if !self.recording() {
            return;
        }
        Digest::of(output).put(&mut self.record);
        self.tick += 1;
        let size = self.record.len();
        // The next tick's buffer is as large as this one's: it does not grow from nothing.
        let record = std::mem::replace(&mut self.record, Vec::with_capacity(size));
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            self.stop("the disk does not keep up: more than 64 MiB of ticks wait to be written");
            return;
        }
        if let Some(queue) = &self.queue {
            if queue.send(record).is_err() {
                self.stop("the writer thread has stopped");
            }
        }
    }

    /// Ends the recording: the last record says `why`.
    fn stop(&mut self, why: &str) {
        if let Some(queue) = self.queue.take() {
            spdlog::error!("record: recording stopped at tick {}: {why}", self.tick);
            let _ = queue.send(end_record(self.tick, why));
        }
    }

    /// The end of the run: the last record says so, and the writer finishes.
    pub fn finish(mut self) {
        if let Some(queue) = self.queue.take() {
            let _ = queue.send(end_record(self.tick, "the server stopped"));
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: records into segments.
struct SegmentWriter {
    dir: PathBuf,
    number: u32,
    file: Option<BufWriter<File>>,
    written: u64,
    total: u64,
    max_total: u64,
    /// Tick records written.
    ticks: u64,
}

impl SegmentWriter {
    fn run(
        mut self,
        ticks: crossbeam_channel::Receiver<Vec<u8>>,
        queued: &AtomicUsize,
        stopped: &AtomicBool,
    ) {
        while let Ok(record) = ticks.recv() {
            queued.fetch_sub(record.len(), Ordering::Relaxed);
            let end = record.first() == Some(&END);
            if let Err(why) = self.write(&record) {
                stopped.store(true, Ordering::Relaxed);
                spdlog::error!("record: recording stopped: {why}");
                // Into the room kept for it: the reader says why.
                let _ = self.write(&end_record(self.ticks, &why));
                let _ = self.flush();
                return;
            }
            if end {
                break;
            }
            if ticks.is_empty() {
                if let Err(why) = self.flush() {
                    stopped.store(true, Ordering::Relaxed);
                    spdlog::error!("record: recording stopped: {why}");
                    return;
                }
            }
        }
        if let Err(why) = self.flush() {
            spdlog::error!("record: the recording's last records were lost: {why}");
        }
    }

    fn write(&mut self, record: &[u8]) -> Result<(), String> {
        let size = 8 + record.len() as u64;
        let end = record.first() == Some(&END);
        let kept = if end { 0 } else { END_ROOM };
        if self.total + size + kept > self.max_total {
            return Err(format!(
                "the recording reached its bound of {} MiB (--record-max-mib)",
                self.max_total >> 20
            ));
        }
        if self.file.is_none() || self.written + size > SEGMENT_BYTES {
            self.flush()?;
            if self.file.is_some() {
                self.number += 1;
            }
            let path = self.dir.join(format!("{:06}.rec", self.number));
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| format!("cannot make {}: {e}", path.display()))?;
            let mut file = BufWriter::with_capacity(1 << 20, file);
            let mut head = Vec::with_capacity(12);
            head.extend_from_slice(MAGIC);
            head.extend_from_slice(&FORMAT.to_le_bytes());
            head.extend_from_slice(&self.number.to_le_bytes());
            file.write_all(&head)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            self.file = Some(file);
            self.written = head.len() as u64;
            self.total += head.len() as u64;
        }
        let file = self.file.as_mut().ok_or("no segment")?;
        let mut frame = [0u8; 8];
        frame[..4].copy_from_slice(&(record.len() as u32).to_le_bytes());
        frame[4..].copy_from_slice(&crc32fast::hash(record).to_le_bytes());
        file.write_all(&frame)
            .and_then(|()| file.write_all(record))
            .map_err(|e| format!("cannot write segment {:06}.rec: {e}", self.number))?;
        self.written += size;
        self.total += size;
        self.ticks += u64::from(record.first() == Some(&TICK));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        match self.file.as_mut() {
            Some(file) => file
                .flush()
                .map_err(|e| format!("cannot write segment {:06}.rec: {e}", self.number)),
            None => Ok(()),
        }
    }
}

/// The segment files of `dir`, in order.
fn segments(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "rec")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// A recording's records, in order, checked.
pub struct RecordingReader {
    segments: Vec<PathBuf>,
    next: usize,
    current: Option<(PathBuf, Bytes, usize)>,
}

/// One record of a recording.
#[derive(Debug)]
pub enum Record {
    /// The header.
    Header(Header),
    /// A tick.
    Tick(TickRecord),
    /// The end: after how many ticks, and why.
    End {
        /// Ticks recorded.
        ticks: u64,
        /// Why it ended.
        why: String,
    },
}

/// A tick as recorded: its inputs still encoded (they need the game's codecs to be read).
#[derive(Debug)]
pub struct TickRecord {
    /// Its number, from 0.
    pub tick: u64,
    /// Its time from the start.
    pub at: Duration,
    /// The wall clock, in µs since the Unix epoch.
    pub unix_us: u64,
    /// How many inputs.
    pub inputs: u64,
    reader: Reader,
}

impl TickRecord {
    /// The inputs, read with `codecs`, and the digest of the output that followed.
    pub fn read(mut self, codecs: &[AnswerCodec]) -> Result<(Vec<Input>, Digest), String> {
        let mut inputs = Vec::with_capacity(self.inputs.min(1 << 16) as usize);
        for i in 0..self.inputs {
            inputs.push(
                codec::input(&mut self.reader, codecs)
                    .map_err(|e| format!("tick {}, input {i}: {e}", self.tick))?,
            );
        }
        let digest = Digest::read(&mut self.reader)?;
        Ok((inputs, digest))
    }
}

impl RecordingReader {
    /// The recording in `dir`.
    pub fn open(dir: &Path) -> Result<RecordingReader, String> {
        let segments = segments(dir)?;
        if segments.is_empty() {
            return Err(format!(
                "{} holds no recording (no NNNNNN.rec)",
                dir.display()
            ));
        }
        Ok(RecordingReader {
            segments,
            next: 0,
            current: None,
        })
    }

    /// The next record; `None` after the last. A damaged record is an error naming the
    /// segment and the offset; a last record cut short (the server killed) ends the recording.
    pub fn next_record(&mut self) -> Result<Option<Record>, String> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.segments.get(self.next).cloned() else {
                    return Ok(None);
                };
                let expected = self.next as u32;
                self.next += 1;
                let mut bytes = Vec::new();
                File::open(&path)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if bytes.len() < 12 || &bytes[..4] != MAGIC {
                    return Err(format!(
                        "{} is not a segment of a recording",
                        path.display()
                    ));
                }
                let format = u32::from_le_bytes(bytes[4..8].try_into().unwrap_or_default());
                let number = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
                if format != FORMAT {
                    return Err(format!(
                        "{} is of format {format}; this build reads {FORMAT}",
                        path.display()
                    ));
                }
                if number != expected {
                    return Err(format!(
                        "{} says it is segment {number}, where segment {expected} should be",
                        path.display()
                    ));
                }
                self.current = Some((path, Bytes::from(bytes), 12));
            }
            let Some((path, bytes, at)) = self.current.as_mut() else {
                continue;
            };
            if *at == bytes.len() {
                self.current = None;
                continue;
            }
            let last = self.next == self.segments.len();
            let offset = *at;
            if bytes.len() - offset < 8 {
                return self.cut_short(last, offset);
            }
            let len = u32::from_le_bytes(bytes[*at..*at + 4].try_into().unwrap_or_default());
            let crc = u32::from_le_bytes(bytes[*at + 4..*at + 8].try_into().unwrap_or_default());
            let len = len as usize;
            if len > MAX_RECORD {
                return Err(format!(
                    "{}: the record at byte {at} says it has {len} bytes: damaged",
                    path.display()
                ));
            }
            if bytes.len() - offset - 8 < len {
                return self.cut_short(last, offset);
            }
            let record = bytes.slice(*at + 8..*at + 8 + len);
            if crc32fast::hash(&record) != crc {
                return Err(format!(
                    "{}: the record at byte {at} does not match its checksum: damaged",
                    path.display()
                ));
            }
            *at += 8 + len;
            let name = path.display().to_string();
            return parse(record)
                .map(Some)
                .map_err(|e| format!("{name}: the record at byte {offset}: {e}"));
        }
    }

    fn cut_short(&mut self, last: bool, at: usize) -> Result<Option<Record>, String> {
        let path = self.current.take().map(|c| c.0).unwrap_or_default();
        if last {
            // The server was killed while writing: what came before is whole.
            Ok(None)
        } else {
            Err(format!(
                "{}: the record at byte {at} is cut short, and segments follow: damaged",
                path.display()
            ))
        }
    }
}

fn parse(record: Bytes) -> Result<Record, String> {
    let mut r = Reader::new(record);
    Ok(match r.u8()? {
        HEADER => Record::Header(Header::read(&mut r)?),
        TICK => {
            let tick = r.var()?;
            let at = Duration::from_nanos(r.var()?);
            let unix_us = r.var()?;
            let inputs = r.var()?;
            Record::Tick(TickRecord {
                tick,
                at,
                unix_us,
                inputs,
                reader: r,
            })
        }
        END => Record::End {
            ticks: r.var()?,
            why: r.string()?,
        },
        other => return Err(format!("unknown record kind {other}")),
    })
}

mod replay;
pub use replay::{replay, Replayed};
