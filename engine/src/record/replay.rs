//! A recording run through a new core: the world made as the server made it (the recorded
//! configuration, hash keys and cluster node), each tick's inputs at the tick's time, and each
//! tick's output compared with the recorded [`Digest`]. The first tick that differs stops the
//! replay, and what differs is written out: which kinds of output, their counts and hashes,
//! and what the replay made of them.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use config::ServerConfig;

use super::{Digest, Record, RecordingReader, OUTPUTS};
use crate::assemble::Parts;
use crate::core::Output;
use crate::world::{Game, Now};

/// What a replay went through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Ticks run, each with the recorded output.
    pub ticks: u64,
    /// Inputs taken.
    pub inputs: u64,
    /// Why the recording ended, as its last record says; `None` when it has none (the server
    /// was killed).
    pub end: Option<String>,
}

/// Replays the recording in `dir` with the world of `make_game`, under `config` (the
/// recorded one when `None`). Writes to `out` what differs at the first tick whose output is
/// not the recorded one, and returns an error saying which tick; a damaged recording is an
/// error naming the segment and the offset.
pub fn replay<G: Game>(
    dir: &Path,
    config: Option<ServerConfig>,
    make_game: impl FnOnce(&ServerConfig) -> Result<G, String>,
    out: &mut dyn Write,
) -> Result<Replayed, String> {
    let mut reader = RecordingReader::open(dir)?;
    let header = match reader.next_record()? {
        Some(Record::Header(header)) => header,
        _ => return Err(format!("{}: the recording has no header", dir.display())),
    };
    if header.game != G::NAME {
        return Err(format!(
            "the recording is of the game {:?}; this server runs {:?}",
            header.game,
            G::NAME
        ));
    }
    if !crate::hash::use_keys(header.keys) {
        return Err("the world's maps were made before the recording's keys were taken".into());
    }
    let mut config = match config {
        Some(config) => config,
        None => ServerConfig::from_toml_str(&header.config, "the recording's configuration")
            .map_err(|e| e.to_string())?,
    };
    config.apply_game_defaults(G::NAME, G::STORAGE);
    let game = make_game(&config)?;
    let parts = Parts::<G>::new().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (mut core, _registry) = parts.core(&config, game, started, header.node.clone());
    let codecs = core.world().hooks.answer_codecs.clone();
    let mut replayed = Replayed::default();
    while let Some(record) = reader.next_record()? {
        let tick = match record {
            Record::Tick(tick) => tick,
            Record::End { why, .. } => {
                replayed.end = Some(why);
                break;
            }
            Record::Header(_) => return Err("a second header in the recording".into()),
        };
        let (number, at) = (tick.tick, tick.at);
        let now = Now {
            at: started + tick.at,
            unix_us: tick.unix_us,
        };
        let (inputs, recorded) = tick.read(&codecs)?;
        replayed.inputs += inputs.len() as u64;
        let output = core.tick(now, inputs);
        let digest = Digest::of(output);
        if digest != recorded {
            let _ = describe(out, number, at, &recorded, &digest, output);
            return Err(format!(
                "tick {number} ({:.3} s into the run) differs from the recording",
                at.as_secs_f64()
            ));
        }
        replayed.ticks += 1;
    }
    Ok(replayed)
}

/// Lines shown of each kind of output that differs.
const SHOWN: usize = 20;

/// Writes what differs between the `recorded` and `replayed` digests of a tick, and what the
/// replay's output holds of each kind that differs.
fn describe(
    out: &mut dyn Write,
    tick: u64,
    at: std::time::Duration,
    recorded: &Digest,
    replayed: &Digest,
    output: &Output,
) -> std::io::Result<()> {
    writeln!(
        out,
        "tick {tick} ({:.3} s into the run) differs from the recording:",
        at.as_secs_f64()
    )?;
    for (kind, name) in OUTPUTS.iter().enumerate() {
        if recorded.counts[kind] == replayed.counts[kind]
            && recorded.hashes[kind] == replayed.hashes[kind]
        {
            continue;
        }
        writeln!(
            out,
            "  {name}: recorded {} (hash {:016x}), replayed {} (hash {:016x})",
            recorded.counts[kind],
            recorded.hashes[kind],
            replayed.counts[kind],
            replayed.hashes[kind]
        )?;
        let lines: Vec<String> = match kind {
            0 => output
                .opened
                .iter()
                .map(|(token, session)| format!("stream {token} opened as session {session}"))
                .collect(),
            1 => output
                .refused
                .iter()
                .map(|r| format!("stream {} from {} refused: {}", r.token, r.peer, r.reason))
                .collect(),
            2 => output
                .batches
                .iter()
                .map(|(session, frames)| {
                    let frames: Vec<String> = frames
                        .iter()
                        .map(|f| match f.get(2..4) {
                            Some(id) => {
                                format!("{} ({} B)", u16::from_le_bytes([id[0], id[1]]), f.len())
                            }
                            None => format!("? ({} B)", f.len()),
                        })
                        .collect();
                    format!("session {session}: {}", frames.join(", "))
                })
                .collect(),
            3 => output
                .closes
                .iter()
                .map(|(session, reason)| format!("session {session} closed: {reason}"))
                .collect(),
            4 => output
                .credits
                .iter()
                .map(|(session, credit)| format!("session {session}: {credit} frames of credit"))
                .collect(),
            5 => output.bucket.iter().map(|r| format!("{r:?}")).collect(),
            6 => output
                .cluster
                .iter()
                .map(|(subject, batch)| {
                    format!(
                        "{subject}: batch {} of {} events",
                        batch.seq,
                        batch.events.len()
                    )
                })
                .collect(),
            _ => output.db.iter().map(|job| format!("{job:?}")).collect(),
        };
        writeln!(out, "  replayed {name}:")?;
        for line in lines.iter().take(SHOWN) {
            let line: String = line.chars().take(200).collect();
            writeln!(out, "    {line}")?;
        }
        if lines.len() > SHOWN {
            writeln!(out, "    ... and {} more", lines.len() - SHOWN)?;
        }
    }
    Ok(())
}
