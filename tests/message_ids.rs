//! The message-id table of `build.rs`: bad tables fail with a message that names them.

#[allow(dead_code)]
#[path = "../build/message_ids.rs"]
mod message_ids;

use std::path::PathBuf;

use message_ids::{collect_entries, Direction};

/// Compiles one `.proto` text (package `t`) and runs the id checks on it.
fn check(proto: &str) -> Result<Vec<message_ids::Entry>, Vec<String>> {
    check_files(&[("t.proto", proto)])
}

/// Compiles `.proto` files given as (name, text) and runs the id checks on them.
fn check_files(protos: &[(&str, &str)]) -> Result<Vec<message_ids::Entry>, Vec<String>> {
    let dir = std::env::temp_dir().join(format!(
        "message-ids-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = protos
        .iter()
        .map(|(name, text)| {
            let file = dir.join(name);
            std::fs::write(&file, text).unwrap();
            file
        })
        .collect();
    let result = protox::compile(&files, [&dir]).map_err(|e| vec![format!("{e:?}")]);
    let _ = std::fs::remove_dir_all(&dir);
    collect_entries(&result?)
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
  option allow_alias = true;
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
fn project_protos_declare_every_message_of_the_protocol_page() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    let fds = protox::compile(&files, [&dir]).unwrap();
    let ids: Vec<(u32, String)> = collect_entries(&fds)
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.proto_name))
        .collect();
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
    assert_eq!(
        protocol::MESSAGE_IDS
            .iter()
            .map(|(i, n)| (*i as u32, n.to_string()))
            .collect::<Vec<_>>(),
        expected
    );
}
