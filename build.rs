//! Compiles `proto/*.proto` with protox (no system `protoc`) and prost-build, then generates
//! the message-type table (see `build/message_ids.rs`): for every entry of a `MessageId`
//! enum, an implementation of `MessageType` carrying the id as a constant, the direction
//! marker trait, and the `C2sMessage` / `S2cMessage` enums that decode a frame by id.
//!
//! The build fails, naming the culprits, when an id names no message, two entries share an id,
//! or an id lies outside the range of its message's direction. The ids are checked on the
//! parsed files before protox validates them, so that a duplicate id is reported with both
//! names rather than as protobuf's bare "number already used".

#[path = "build/message_ids.rs"]
mod message_ids;

use std::path::PathBuf;

use message_ids::{compile, proto_files, write_table};

fn main() {
    if let Err(errors) = run() {
        eprintln!("message id table is invalid:");
        for error in &errors {
            eprintln!("  {error}");
        }
        std::process::exit(1);
    }
}

fn run() -> Result<(), Vec<String>> {
    let proto_dir = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build/message_ids.rs");
    let files = proto_files(&proto_dir)?;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let (fds, entries) = compile(&proto_dir, &files)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    prost_build::Config::new()
        .compile_fds(fds)
        .map_err(|e| vec![format!("prost-build: {e}")])?;
    write_table(&out_dir.join("message_types.rs"), &entries)
        .map_err(|e| vec![format!("cannot write message table: {e}")])?;
    Ok(())
}
