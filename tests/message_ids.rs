//! The message-id table of `build.rs`: bad tables fail with a message that names them, and
//! the project's `.proto` files compile with Google's protoc too.

#[allow(dead_code)]
#[path = "../build/message_ids.rs"]
mod message_ids;

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

#[test]
fn project_protos_declare_every_message_of_the_protocol_page() {
    let (_, entries) = project_protos();
    let ids: Vec<(u32, String)> = entries.into_iter().map(|e| (e.id, e.proto_name)).collect();
    let expected = [
        (1000, "S2C_Chat"),
        (1001, "S2C_Pong"),
        (1002, "S2C_Welcome"),
        (1003, "S2C_Error"),
        (1010, "S2C_AuthResult"),
        (1020, "S2C_Whisper"),
        (1030, "S2C_RoomJoined"),
        (1031, "S2C_RoomLeft"),
        (1032, "S2C_RoomList"),
        (1033, "S2C_RoomPresence"),
        (2000, "C2S_Chat"),
        (2001, "C2S_Ping"),
        (2010, "C2S_Register"),
        (2011, "C2S_Login"),
        (2012, "C2S_Resume"),
        (2013, "C2S_Logout"),
        (2020, "C2S_Whisper"),
        (2030, "C2S_RoomJoin"),
        (2031, "C2S_RoomLeave"),
        (2032, "C2S_RoomList"),
    ];
    let expected: Vec<(u32, String)> = expected.iter().map(|(i, n)| (*i, n.to_string())).collect();
    assert_eq!(ids, expected);
    assert_eq!(built_ids().into_iter().collect::<Vec<_>>(), expected);
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
