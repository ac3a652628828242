//! The build step of every crate with wire messages: the engine's `protocol` crate, and a
//! game's own crate.
//!
//! Messages and their ids are declared once, in `.proto` files: each message, and an entry in
//! an enum `MessageId` whose name is the message name in SCREAMING_SNAKE_CASE
//! (`C2S_Move = 2100` is `C2S_MOVE = 2100`). Server-to-client messages (`S2C_*`) take ids
//! 1000-1999, client-to-server ones (`C2S_*`) 2000-2999. This crate compiles the files with
//! protox (no system `protoc`) and prost-build and writes, for every message, its
//! `protocol::MessageType` (id and name) and direction trait, the enums `C2sMessage` and
//! `S2cMessage` that decode a frame by id, and `MESSAGE_IDS`.
//!
//! The build fails, naming the entries, when an id names no message, two entries share an id
//! (in one file, across files, or between a game and the engine), or an id lies outside its
//! direction's range.
//!
//! A game calls [`compile_game`] from its `build.rs`:
//!
//! ```ignore
//! // build.rs of a game crate with its messages in proto/
//! fn main() {
//!     if let Err(errors) = protocol_build::compile_game("proto") {
//!         protocol_build::fail(&errors);
//!     }
//! }
//! ```
//!
//! and includes what it wrote, one module per proto package and the table at the crate root:
//!
//! ```ignore
//! pub mod arena {
//!     include!(concat!(env!("OUT_DIR"), "/arena.rs"));
//! }
//! include!(concat!(env!("OUT_DIR"), "/message_types.rs"));
//! ```
//!
//! The game's messages may use the engine's (package `world`, the `protocol` crate's
//! `protocol::world`) by importing their file, such as `import "session.proto";`.
#![warn(missing_docs)]

pub mod ids;
pub mod js;

use std::path::{Path, PathBuf};

pub use ids::{collect_entries, proto_files, write_table, Direction, Entry, Target};

include!(concat!(env!("OUT_DIR"), "/engine_protos.rs"));

/// Prints `errors` as a build failure and exits the build script.
pub fn fail(errors: &[String]) -> ! {
    eprintln!("message id table is invalid:");
    for error in errors {
        eprintln!("  {error}");
    }
    std::process::exit(1);
}

fn out_dir() -> Result<PathBuf, Vec<String>> {
    std::env::var("OUT_DIR")
        .map(PathBuf::from)
        .map_err(|_| vec!["OUT_DIR is not set: call this from a build script".to_string()])
}

/// For the engine's `protocol` crate: compiles the `.proto` files of `proto_dir` into
/// `OUT_DIR`, with the engine's table, and writes their `messages.js` there.
pub fn compile_engine(proto_dir: impl AsRef<Path>) -> Result<(), Vec<String>> {
    let proto_dir = proto_dir.as_ref();
    let files = rerun_on(proto_dir)?;
    let (fds, entries) = ids::compile(proto_dir, &files)?;
    let out = out_dir()?;
    js::write_js(&out.join(js::FILE_NAME), &fds, &entries)
        .map_err(|e| vec![format!("cannot write {}: {e}", js::FILE_NAME)])?;
    prost_build::Config::new()
        .out_dir(&out)
        .compile_fds(fds)
        .map_err(|e| vec![format!("prost-build: {e}")])?;
    write_table(&out.join("message_types.rs"), &entries, Target::Engine)
        .map_err(|e| vec![format!("cannot write the message table: {e}")])
}

/// For a game's crate: compiles its `.proto` files in `proto_dir` into `OUT_DIR`, checking its
/// ids against the engine's too (see the crate docs).
pub fn compile_game(proto_dir: impl AsRef<Path>) -> Result<(), Vec<String>> {
    let proto_dir = proto_dir.as_ref();
    rerun_on(proto_dir)?;
    compile_game_into(proto_dir, &out_dir()?)
}

/// [`compile_game`] into `out`: the game's Rust, its message table, and its `messages.js`
/// (the game's own messages, naming the engine's types in full).
pub fn compile_game_into(proto_dir: &Path, out: &Path) -> Result<(), Vec<String>> {
    let files = proto_files(proto_dir)?;
    // The engine's files, where protox can read them (a game's file may import them).
    let engine_dir = out.join("engine-proto");
    std::fs::create_dir_all(&engine_dir)
        .map_err(|e| vec![format!("cannot create {}: {e}", engine_dir.display())])?;
    let mut engine_files = Vec::new();
    for (name, text) in ENGINE_PROTOS {
        let path = engine_dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| vec![format!("cannot write {}: {e}", path.display())])?;
        engine_files.push(path);
    }
    for file in &files {
        let name = file.file_name().unwrap_or_default();
        if ENGINE_PROTOS.iter().any(|(engine, _)| *engine == name) {
            return Err(vec![format!(
                "{}: the engine has a file of this name; name the game's files otherwise",
                file.display()
            )]);
        }
    }
    // Ids checked on the engine's and the game's files together, as parsed.
    let mut parsed = ids::parse(&engine_dir, &engine_files)?;
    parsed.file.extend(ids::parse(proto_dir, &files)?.file);
    let entries = collect_entries(&parsed)?;
    let game_files: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(proto_dir)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let game_entries: Vec<Entry> = entries
        .into_iter()
        .filter(|e| game_files.contains(&e.file))
        .collect();
    let mut fds = protox::compile(&files, [proto_dir, engine_dir.as_path()])
        .map_err(|e| vec![format!("{e:?}")])?;
    // Only the game's own files become Rust here; the engine's types are the protocol crate's.
    fds.file
        .retain(|f| game_files.iter().any(|g| g == f.name()));
    js::write_js(&out.join(js::FILE_NAME), &fds, &game_entries)
        .map_err(|e| vec![format!("cannot write {}: {e}", js::FILE_NAME)])?;
    prost_build::Config::new()
        .out_dir(out)
        .extern_path(".world", "::protocol::world")
        .compile_fds(fds)
        .map_err(|e| vec![format!("prost-build: {e}")])?;
    write_table(&out.join("message_types.rs"), &game_entries, Target::Game)
        .map_err(|e| vec![format!("cannot write the message table: {e}")])
}

/// The `.proto` files of `dir`, and tells cargo to build again when they change.
fn rerun_on(dir: &Path) -> Result<Vec<PathBuf>, Vec<String>> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let files = proto_files(dir)?;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("protocol-build-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("proto")).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        dir
    }

    const GAME: &str = r#"syntax = "proto3";
package game;
import "session.proto";
message C2S_Move { float x = 1; float y = 2; }
message S2C_Moved { float x = 1; float y = 2; world.ErrorCode code = 3; }
enum MessageId {
  MESSAGE_ID_UNSPECIFIED = 0;
  C2S_MOVE = 2500;
  S2C_MOVED = 1500;
}
"#;

    #[test]
    fn a_game_table_gives_its_messages_ids_and_uses_the_engines_types() {
        let dir = scratch("ok");
        std::fs::write(dir.join("proto/game.proto"), GAME).unwrap();
        compile_game_into(&dir.join("proto"), &dir.join("out")).unwrap();
        let table = std::fs::read_to_string(dir.join("out/message_types.rs")).unwrap();
        assert!(table.contains(
            "impl ::protocol::MessageType for crate::game::C2sMove { const ID: u16 = 2500;"
        ));
        assert!(table.contains("impl ::protocol::ServerToClient for crate::game::S2cMoved {}"));
        assert!(table.contains("(1500, \"S2C_Moved\")"));
        assert!(!table.contains("C2S_Chat"), "only the game's own messages");
        let types = std::fs::read_to_string(dir.join("out/game.rs")).unwrap();
        assert!(types.contains("::protocol::world::ErrorCode"), "{types}");
        assert!(
            !dir.join("out/world.rs").exists(),
            "the engine's types are not made again"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_games_messages_js_describes_its_own_messages_naming_the_engines_types() {
        let dir = scratch("js");
        let game = GAME.replace(
            "message C2S_Move { float x = 1; float y = 2; }",
            "message C2S_Move { float x = 1; float y = 2; }\n\
             message Path { repeated sint32 steps = 1 [packed = false]; repeated Point points = 2; \
             message Point { int64 at_us = 1; optional bool seen = 2; } }",
        );
        std::fs::write(dir.join("proto/game.proto"), game).unwrap();
        compile_game_into(&dir.join("proto"), &dir.join("out")).unwrap();
        let js = std::fs::read_to_string(dir.join("out/messages.js")).unwrap();
        assert!(js.starts_with("// Generated from the .proto files by protocol-build."));
        assert!(js.contains(js::RUNTIME), "the runtime comes with the table");
        assert!(js.contains(
            r#""game.C2S_Move": {"name": "C2S_Move", "id": 2500, "fields": [
      {"number": 1, "name": "x", "type": "float", "kind": "scalar", "repeated": false},"#
        ));
        assert!(js.contains(
            r#"{"number": 3, "name": "code", "type": "world.ErrorCode", "kind": "enum", "repeated": false}"#
        ));
        assert!(
            js.contains(r#""game.Path": {"name": "Path", "fields": ["#),
            "no id"
        );
        assert!(js.contains(
            r#"{"number": 1, "name": "steps", "type": "sint32", "kind": "scalar", "repeated": true, "packed": false}"#
        ));
        assert!(js.contains(
            r#"{"number": 2, "name": "points", "type": "game.Path.Point", "kind": "message", "repeated": true}"#
        ));
        assert!(js.contains(r#""game.Path.Point": {"name": "Point", "fields": ["#));
        assert!(js.contains(
            r#"{"number": 2, "name": "seen", "type": "bool", "kind": "scalar", "repeated": false, "optional": true}"#
        ));
        assert!(js.contains(
            r#""game.MessageId": {"name": "MessageId", "values": {"MESSAGE_ID_UNSPECIFIED": 0, "C2S_MOVE": 2500, "S2C_MOVED": 1500}}"#
        ));
        let table = &js[js.rfind("PROTOCOL.define(").unwrap()..];
        assert!(!table.contains("S2C_Chat"), "only the game's own messages");
        assert!(
            !table.contains("\"world.ErrorCode\": {"),
            "the engine's enums are the engine's"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_engines_messages_js_gives_every_message_its_id_and_every_error_code() {
        let dir = scratch("engine-js");
        let mut files = Vec::new();
        for (name, text) in ENGINE_PROTOS {
            let path = dir.join("proto").join(name);
            std::fs::write(&path, text).unwrap();
            files.push(path);
        }
        let (fds, entries) = ids::compile(&dir.join("proto"), &files).unwrap();
        let js = js::messages_js(&fds, &entries);
        assert!(entries.len() >= 20);
        for entry in &entries {
            let head = format!(
                "\"world.{name}\": {{\"name\": \"{name}\", \"id\": {id}, \"fields\": [",
                name = entry.proto_name,
                id = entry.id
            );
            assert!(js.contains(&head), "{head} missing");
        }
        assert!(js.contains(
            r#"{"number": 4, "name": "sent_at_us", "type": "uint64", "kind": "scalar", "repeated": false}"#
        ));
        assert!(js.contains(
            r#"{"number": 1, "name": "rooms", "type": "world.RoomInfo", "kind": "message", "repeated": true}"#
        ));
        assert!(js.contains(r#""world.RoomInfo": {"name": "RoomInfo", "fields": ["#));
        for (name, value) in [("BAD_REQUEST", 1), ("ROOM_FULL", 9), ("LOGIN_TIMEOUT", 15)] {
            assert!(js.contains(&format!("\"{name}\": {value}")), "{name}");
        }
        assert!(js.ends_with("});\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_game_id_taken_by_the_engine_fails_naming_both() {
        let dir = scratch("dup");
        let clash = GAME.replace("C2S_MOVE = 2500", "C2S_MOVE = 2000");
        std::fs::write(dir.join("proto/game.proto"), clash).unwrap();
        let errors = compile_game_into(&dir.join("proto"), &dir.join("out")).unwrap_err();
        assert_eq!(
            errors,
            ["game.proto: duplicate message id 2000: C2S_CHAT and C2S_MOVE"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_game_id_in_the_wrong_range_fails_naming_it() {
        let dir = scratch("range");
        let wrong = GAME.replace("S2C_MOVED = 1500", "S2C_MOVED = 2600");
        std::fs::write(dir.join("proto/game.proto"), wrong).unwrap();
        let errors = compile_game_into(&dir.join("proto"), &dir.join("out")).unwrap_err();
        assert_eq!(
            errors,
            ["game.proto: S2C_MOVED = 2600: S2C_* messages take ids 1000-1999"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
