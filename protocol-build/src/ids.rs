//! The message-id table: reads the `MessageId` enums of the `.proto` files, checks them, and
//! writes the Rust that gives each message its id.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use heck::{ToShoutySnakeCase, ToUpperCamelCase};
use prost_types::FileDescriptorSet;

/// The name of the enums that declare message ids, in any package.
pub const ID_ENUM: &str = "MessageId";

/// Which way a message travels, from its name's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `S2C_*`, ids 1000-1999.
    ServerToClient,
    /// `C2S_*`, ids 2000-2999.
    ClientToServer,
}

impl Direction {
    fn of_name(name: &str) -> Option<Direction> {
        if name.starts_with("S2C_") {
            Some(Direction::ServerToClient)
        } else if name.starts_with("C2S_") {
            Some(Direction::ClientToServer)
        } else {
            None
        }
    }

    fn range(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Direction::ServerToClient => 1000..=1999,
            Direction::ClientToServer => 2000..=2999,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Direction::ServerToClient => "S2C_",
            Direction::ClientToServer => "C2S_",
        }
    }
}

/// One message with its id.
#[derive(Debug)]
pub struct Entry {
    /// The id.
    pub id: u32,
    /// Proto name of the message, such as `S2C_RoomJoined`.
    pub proto_name: String,
    /// Rust path of the generated type, relative to the crate root, such as `world::S2cRoomJoined`.
    pub rust_path: String,
    /// Rust type name alone, such as `S2cRoomJoined`.
    pub rust_name: String,
    /// Its direction.
    pub direction: Direction,
    /// The `.proto` file whose `MessageId` enum gives the id.
    pub file: String,
}

/// The `.proto` files directly in `dir`, sorted by name.
pub fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| vec![format!("cannot read {}: {e}", dir.display())])?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses `files` (in `dir`) without validating them, for the id checks.
pub fn parse(dir: &Path, files: &[PathBuf]) -> Result<FileDescriptorSet, Vec<String>> {
    let mut parsed = FileDescriptorSet::default();
    let mut errors = Vec::new();
    for file in files {
        let name = file.strip_prefix(dir).unwrap_or(file).to_string_lossy();
        let source = std::fs::read_to_string(file)
            .map_err(|e| vec![format!("cannot read {}: {e}", file.display())])?;
        match protox_parse::parse(&name, &source) {
            Ok(descriptor) => parsed.file.push(descriptor),
            Err(e) => errors.push(format!("{e:?}")),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// Checks the message ids of `files` (in `dir`), then compiles them with protox.
///
/// The ids are checked on the files as parsed, before protox validates them: without
/// `allow_alias` (which Google's protoc refuses on an enum with no aliases), protox would
/// refuse a duplicate enum number first, naming one entry; this way the build says which two
/// entries share the id, in one file or across files.
pub fn compile(
    dir: &Path,
    files: &[PathBuf],
) -> Result<(FileDescriptorSet, Vec<Entry>), Vec<String>> {
    let entries = collect_entries(&parse(dir, files)?)?;
    let fds = protox::compile(files, [dir]).map_err(|e| vec![format!("{e:?}")])?;
    Ok((fds, entries))
}

/// Reads every `MessageId` enum and pairs its entries with the messages they name.
///
/// Needs only what parsing gives (names, numbers, packages), so it runs on unvalidated
/// descriptors as well as on compiled ones.
pub fn collect_entries(fds: &FileDescriptorSet) -> Result<Vec<Entry>, Vec<String>> {
    // Messages by SCREAMING_SNAKE name: (proto name, package).
    let mut messages: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for file in &fds.file {
        let package = file.package().to_string();
        for message in &file.message_type {
            let name = message.name().to_string();
            messages
                .entry(name.to_shouty_snake_case())
                .or_default()
                .push((name, package.clone()));
        }
    }

    let mut errors = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut by_id: BTreeMap<u32, String> = BTreeMap::new();
    for file in &fds.file {
        for id_enum in file.enum_type.iter().filter(|e| e.name() == ID_ENUM) {
            for value in &id_enum.value {
                let entry_name = value.name();
                let number = value.number();
                if number == 0 {
                    continue; // proto3's mandatory zero entry: id 0 is reserved, never sent
                }
                let id = match u32::try_from(number) {
                    Ok(id) => id,
                    Err(_) => {
                        errors.push(format!(
                            "{}: {entry_name} = {number}: ids are positive",
                            file.name()
                        ));
                        continue;
                    }
                };
                if let Some(other) = by_id.insert(id, entry_name.to_string()) {
                    errors.push(format!(
                        "{}: duplicate message id {id}: {other} and {entry_name}",
                        file.name()
                    ));
                    continue;
                }
                let candidates = messages.get(entry_name).map(Vec::as_slice).unwrap_or(&[]);
                let (proto_name, package) = match candidates {
                    [one] => one.clone(),
                    [] => {
                        errors.push(format!(
                            "{}: {entry_name} = {id} names no message (expected a message whose name in SCREAMING_SNAKE_CASE is {entry_name})",
                            file.name()
                        ));
                        continue;
                    }
                    many => {
                        let names: Vec<String> =
                            many.iter().map(|(n, p)| format!("{p}.{n}")).collect();
                        errors.push(format!(
                            "{}: {entry_name} = {id} is ambiguous: {}",
                            file.name(),
                            names.join(", ")
                        ));
                        continue;
                    }
                };
                let Some(direction) = Direction::of_name(&proto_name) else {
                    errors.push(format!(
                        "{}: {entry_name} = {id}: message {proto_name} must be named S2C_* (server to client) or C2S_* (client to server)",
                        file.name()
                    ));
                    continue;
                };
                if !direction.range().contains(&id) {
                    let range = direction.range();
                    errors.push(format!(
                        "{}: {entry_name} = {id}: {}* messages take ids {}-{}",
                        file.name(),
                        direction.prefix(),
                        range.start(),
                        range.end()
                    ));
                    continue;
                }
                let rust_name = rust_ident(&proto_name);
                let module = package.replace('.', "::");
                let rust_path = if module.is_empty() {
                    rust_name.clone()
                } else {
                    format!("{module}::{rust_name}")
                };
                entries.push(Entry {
                    id,
                    proto_name,
                    rust_path,
                    rust_name,
                    direction,
                    file: file.name().to_string(),
                });
            }
        }
    }
    if errors.is_empty() {
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// The identifier prost-build gives a message type.
fn rust_ident(proto_name: &str) -> String {
    proto_name.to_upper_camel_case()
}

/// Whose table is written: the engine's own (in the `protocol` crate), or a game's (in the
/// game's crate, implementing the `protocol` crate's traits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The `protocol` crate: `crate::MessageType`, and `S2cMessage::from_any` for each message.
    Engine,
    /// A game crate: `::protocol::MessageType` and friends.
    Game,
}

/// Writes the Rust of `entries` to `path`: for each message its `MessageType` (id and name)
/// and direction trait, the enums `C2sMessage` and `S2cMessage` that decode a frame by id, and
/// `MESSAGE_IDS`. Message types are named from the crate root (`crate::world::S2cChat`).
pub fn write_table(path: &Path, entries: &[Entry], target: Target) -> std::io::Result<()> {
    let engine = match target {
        Target::Engine => "crate",
        Target::Game => "::protocol",
    };
    let mut out = String::new();
    let w = &mut out;
    writeln!(
        w,
        "// Generated from the .proto files by protocol-build. Do not edit."
    )
    .unwrap();
    for e in entries {
        writeln!(
            w,
            "impl {engine}::MessageType for crate::{path} {{ const ID: u16 = {id}; const NAME: &'static str = \"{name}\"; }}",
            path = e.rust_path,
            id = e.id,
            name = e.proto_name
        )
        .unwrap();
    }
    for (direction, trait_name, enum_name) in [
        (Direction::ClientToServer, "ClientToServer", "C2sMessage"),
        (Direction::ServerToClient, "ServerToClient", "S2cMessage"),
    ] {
        let list: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.direction == direction)
            .collect();
        writeln!(
            w,
            "\n/// Every {} message, decoded.",
            direction.prefix().trim_end_matches('_')
        )
        .unwrap();
        writeln!(
            w,
            "#[derive(Clone, Debug, PartialEq)]\n#[allow(missing_docs)]\npub enum {enum_name} {{"
        )
        .unwrap();
        for e in &list {
            writeln!(w, "    {}(crate::{}),", e.rust_name, e.rust_path).unwrap();
        }
        writeln!(w, "}}\n").unwrap();
        writeln!(w, "impl {enum_name} {{").unwrap();
        writeln!(
            w,
            "    /// Decodes the payload of a frame whose id is `id`."
        )
        .unwrap();
        writeln!(w, "    pub fn decode(id: u16, payload: ::bytes::Bytes) -> Result<Self, {engine}::DecodeError> {{").unwrap();
        writeln!(w, "        match id {{").unwrap();
        for e in &list {
            writeln!(
                w,
                "            {id} => <crate::{path} as ::prost::Message>::decode(payload).map(Self::{name}).map_err(|source| {engine}::DecodeError::Payload {{ id, name: \"{proto}\", source }}),",
                id = e.id,
                path = e.rust_path,
                name = e.rust_name,
                proto = e.proto_name
            )
            .unwrap();
        }
        writeln!(
            w,
            "            _ => Err({engine}::DecodeError::UnknownId(id)),"
        )
        .unwrap();
        writeln!(w, "        }}\n    }}\n").unwrap();
        writeln!(w, "    /// The message id of the variant.").unwrap();
        writeln!(w, "    pub fn id(&self) -> u16 {{\n        match *self {{").unwrap();
        for e in &list {
            writeln!(w, "            Self::{}(_) => {},", e.rust_name, e.id).unwrap();
        }
        writeln!(w, "        }}\n    }}\n").unwrap();
        writeln!(w, "    /// The proto name of the variant's message.").unwrap();
        writeln!(
            w,
            "    pub fn name(&self) -> &'static str {{\n        match *self {{"
        )
        .unwrap();
        for e in &list {
            writeln!(
                w,
                "            Self::{}(_) => \"{}\",",
                e.rust_name, e.proto_name
            )
            .unwrap();
        }
        writeln!(w, "        }}\n    }}\n}}\n").unwrap();
        for e in &list {
            if direction == Direction::ClientToServer || target == Target::Game {
                writeln!(
                    w,
                    "impl {engine}::{trait_name} for crate::{} {{}}",
                    e.rust_path
                )
                .unwrap();
                continue;
            }
            writeln!(
                w,
                "impl crate::{trait_name} for crate::{path} {{\n    fn from_any(message: {enum_name}) -> Option<Self> {{\n        match message {{ {enum_name}::{name}(m) => Some(m), #[allow(unreachable_patterns)] _ => None }}\n    }}\n}}",
                path = e.rust_path,
                name = e.rust_name
            )
            .unwrap();
        }
    }
    writeln!(
        w,
        "\n/// Every message id with its proto name, in id order."
    )
    .unwrap();
    writeln!(w, "pub const MESSAGE_IDS: &[(u16, &str)] = &[").unwrap();
    for e in entries {
        writeln!(w, "    ({}, \"{}\"),", e.id, e.proto_name).unwrap();
    }
    writeln!(w, "];").unwrap();
    std::fs::write(path, out)
}
