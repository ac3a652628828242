//! The message-id table of `protocol-build`: bad tables fail with a message that names them, and
//! the project's tables agree with Google's protoc and with the protocol page.

use protocol_build::ids as message_ids;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use message_ids::{collect_entries, proto_files, Direction, Entry};
use prost::Message as _;
use prost_types::FileDescriptorSet;

/// Compiles one `.proto` text (package `t`) as the build does, id checks first.
fn check(proto: &str) -> Result<Vec<Entry>, Vec<String>> {
    check_files(&[("t.proto", proto)])
}

/// Compiles `.proto` files given as (name, text) as the build does, id checks first.
fn check_files(protos: &[(&str, &str)]) -> Result<Vec<Entry>, Vec<String>> {
    let dir = scratch_dir("message-ids");
    let files: Vec<PathBuf> = protos
        .iter()
        .map(|(name, text)| {
            let file = dir.join(name);
            std::fs::write(&file, text).unwrap();
            file
        })
        .collect();
    let result = message_ids::compile(&dir, &files);
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|(_, entries)| entries)
}

/// A new empty directory of this test process.
fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn proto(ids: &str) -> String {
    format!(
        r#"syntax = "proto3";
package t;
message S2C_Hello {{ string a = 1; }}
message C2S_Hello {{ string a = 1; }}
message C2S_RoomJoin {{ string a = 1; }}
enum MessageId {{
  MESSAGE_ID_UNSPECIFIED = 0;
{ids}
}}
"#
    )
}

fn errors(ids: &str) -> String {
    check(&proto(ids))
        .expect_err("the table must be refused")
        .join("\n")
}

#[test]
fn valid_table_gives_each_message_its_id_and_direction() {
    let entries = check(&proto(
        "S2C_HELLO = 1000; C2S_HELLO = 2000; C2S_ROOM_JOIN = 2030;",
    ))
    .unwrap();
    let got: Vec<(u32, &str, &str, Direction)> = entries
        .iter()
        .map(|e| {
            (
                e.id,
                e.proto_name.as_str(),
                e.rust_name.as_str(),
                e.direction,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1000, "S2C_Hello", "S2cHello", Direction::ServerToClient),
            (2000, "C2S_Hello", "C2sHello", Direction::ClientToServer),
            (
                2030,
                "C2S_RoomJoin",
                "C2sRoomJoin",
                Direction::ClientToServer
            ),
        ]
    );
    assert_eq!(entries[2].rust_path, "t::C2sRoomJoin");
}

#[test]
fn duplicate_id_fails_naming_both_entries() {
    let e = errors("S2C_HELLO = 1000; C2S_HELLO = 1000;");
    assert!(
        e.contains("duplicate message id 1000: S2C_HELLO and C2S_HELLO"),
        "{e}"
    );
}

#[test]
fn duplicate_id_across_two_enums_fails_naming_both() {
    let first = proto("S2C_HELLO = 1000;");
    let second = "syntax = \"proto3\";\npackage u;\nmessage S2C_Other {}\n\
                  enum MessageId { NONE = 0; S2C_OTHER = 1000; }\n";
    let e = check_files(&[("t.proto", &first), ("u.proto", second)])
        .expect_err("the table must be refused")
        .join("\n");
    assert!(
        e.contains("duplicate message id 1000: S2C_HELLO and S2C_OTHER"),
        "{e}"
    );
}

#[test]
fn id_in_the_wrong_range_for_its_direction_fails() {
    let e = errors("C2S_HELLO = 1500;");
    assert!(
        e.contains("C2S_HELLO = 1500") && e.contains("2000-2999"),
        "{e}"
    );
    let e = errors("S2C_HELLO = 2500;");
    assert!(
        e.contains("S2C_HELLO = 2500") && e.contains("1000-1999"),
        "{e}"
    );
}

#[test]
fn id_naming_no_message_fails_naming_it() {
    let e = errors("S2C_GOODBYE = 1001;");
    assert!(
        e.contains("S2C_GOODBYE") && e.contains("names no message"),
        "{e}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let e = errors("S2C_GOODBYE = 1001; C2S_HELLO = 1002;");
    assert_eq!(e.lines().count(), 2, "{e}");
}

#[test]
fn duplicate_id_in_one_enum_is_reported_by_the_id_check_not_by_protox() {
    let e = errors("S2C_HELLO = 1000; C2S_HELLO = 1000; C2S_ROOM_JOIN = 2030;");
    assert_eq!(
        e,
        "t.proto: duplicate message id 1000: S2C_HELLO and C2S_HELLO"
    );
}

#[test]
fn valid_table_compiles_with_protox_too() {
    let dir = scratch_dir("message-ids");
    let file = dir.join("t.proto");
    std::fs::write(&file, proto("S2C_HELLO = 1000; C2S_HELLO = 2000;")).unwrap();
    let result = message_ids::compile(&dir, std::slice::from_ref(&file));
    let _ = std::fs::remove_dir_all(&dir);
    let (fds, entries) = result.unwrap();
    assert_eq!(entries.len(), 2);
    let compiled = &fds.file[0];
    assert_eq!(compiled.name(), "t.proto");
    // Validated: field json names are filled in by the compiler, never by the parser.
    assert_eq!(compiled.message_type[0].field[0].json_name(), "a");
}

fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The project's `proto/`, compiled as the build compiles it.
fn project_protos() -> (FileDescriptorSet, Vec<Entry>) {
    let dir = project_dir().join("proto");
    message_ids::compile(&dir, &proto_files(&dir).unwrap())
        .unwrap_or_else(|e| panic!("proto/ does not compile:\n{}", e.join("\n")))
}

/// The ids the build gave the messages of this crate, by id.
fn built_ids() -> BTreeMap<u32, String> {
    protocol::MESSAGE_IDS
        .iter()
        .map(|(id, name)| (u32::from(*id), name.to_string()))
        .collect()
}

fn ids_of(entries: &[Entry]) -> BTreeMap<u32, String> {
    entries
        .iter()
        .map(|e| (e.id, e.proto_name.clone()))
        .collect()
}

/// The body rows of the first table after the line `heading` of `doc`, as trimmed cells.
fn table_under(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = doc
        .lines()
        .skip_while(|line| line.trim_end() != heading)
        .skip(1)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header row and the |---| row
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "no table under {heading:?}");
    rows
}

/// The first two cells of each row of the table under `heading` in docs/PROTOCOL.md, as a
/// number and a name.
fn numbered_names_on_the_protocol_page(heading: &str) -> BTreeMap<u32, String> {
    let path = project_dir().join("docs/PROTOCOL.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let mut by_number = BTreeMap::new();
    for row in table_under(&page, heading) {
        let number: u32 = row[0]
            .parse()
            .unwrap_or_else(|_| panic!("PROTOCOL.md, {heading}: {:?} is not a number", row[0]));
        if let Some(other) = by_number.insert(number, row[1].clone()) {
            panic!(
                "PROTOCOL.md, {heading}: {number} is listed twice, as {other} and {}",
                row[1]
            );
        }
    }
    by_number
}

/// Panics, listing both sides, unless `page` and `source` hold the same pairs.
fn assert_same_table(page: &BTreeMap<u32, String>, source: &BTreeMap<u32, String>, what: &str) {
    let only_on_page: Vec<String> = page
        .iter()
        .filter(|(number, name)| source.get(number) != Some(name))
        .map(|(number, name)| format!("{number} {name}"))
        .collect();
    let only_in_source: Vec<String> = source
        .iter()
        .filter(|(number, name)| page.get(number) != Some(name))
        .map(|(number, name)| format!("{number} {name}"))
        .collect();
    assert!(
        only_on_page.is_empty() && only_in_source.is_empty(),
        "docs/PROTOCOL.md and proto/ disagree on {what}:\n  \
         on the page but not in proto/: {only_on_page:?}\n  \
         in proto/ but not on the page: {only_in_source:?}"
    );
}

#[test]
fn message_table_of_the_build_is_what_proto_declares() {
    let (_, entries) = project_protos();
    assert_eq!(built_ids(), ids_of(&entries));
}

#[test]
fn protocol_page_lists_every_message_with_the_id_proto_gives_it() {
    let (_, entries) = project_protos();
    assert_same_table(
        &numbered_names_on_the_protocol_page("## Messages"),
        &ids_of(&entries),
        "message ids",
    );
}

#[test]
fn protocol_page_lists_every_error_code_with_its_number() {
    let (fds, _) = project_protos();
    let codes: BTreeMap<u32, String> = fds
        .file
        .iter()
        .flat_map(|file| &file.enum_type)
        .filter(|e| e.name() == "ErrorCode")
        .flat_map(|e| &e.value)
        .filter(|value| value.number() != 0)
        .map(|value| (value.number() as u32, value.name().to_string()))
        .collect();
    assert!(!codes.is_empty(), "proto/ declares no ErrorCode");
    assert_same_table(
        &numbered_names_on_the_protocol_page("### Error codes"),
        &codes,
        "error codes",
    );
}

#[test]
fn project_protos_compile_with_googles_protoc_without_warnings() {
    let protoc =
        protoc_bin_vendored::protoc_bin_path().expect("protoc-bin-vendored has a protoc here");
    let version = Command::new(&protoc)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", protoc.display()));
    let dir = project_dir().join("proto");
    let scratch = scratch_dir("protoc");
    let descriptors = scratch.join("protos.pb");
    let output = Command::new(&protoc)
        .arg(format!("--proto_path={}", dir.display()))
        .arg(format!("--descriptor_set_out={}", descriptors.display()))
        .arg("--fatal_warnings")
        .args(proto_files(&dir).unwrap())
        .output()
        .unwrap();
    let written = std::fs::read(&descriptors);
    let _ = std::fs::remove_dir_all(&scratch);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with --nocapture; a warning fails the run (--fatal_warnings) and the assert.
    eprintln!("{version}: {:?}", stderr.trim());
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{version} on proto/: {}\n{stderr}",
        output.status
    );
    let set = FileDescriptorSet::decode(written.unwrap().as_slice()).unwrap();
    let entries = collect_entries(&set).unwrap();
    assert_eq!(ids_of(&entries), built_ids(), "{version} reads other ids");
}
