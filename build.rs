//! Compiles `proto/*.proto` with protox (no system `protoc`) and prost-build, then generates
//! the message-type table (see `build/message_ids.rs`): for every entry of a `MessageId`
//! enum, an implementation of `MessageType` carrying the id as a constant, the direction
//! marker trait, and the `C2sMessage` / `S2cMessage` enums that decode a frame by id.
//!
//! The build fails, naming the culprits, when an id names no message, two entries share an id,
//! or an id lies outside the range of its message's direction.

#[path = "build/message_ids.rs"]
mod message_ids;

use std::path::PathBuf;

use message_ids::{collect_entries, write_table};

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
    let mut files: Vec<PathBuf> = std::fs::read_dir(&proto_dir)
        .map_err(|e| vec![format!("cannot read {}: {e}", proto_dir.display())])?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&proto_dir]).map_err(|e| vec![format!("{e:?}")])?;
    let entries = collect_entries(&fds)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    prost_build::Config::new()
        .compile_fds(fds)
        .map_err(|e| vec![format!("prost-build: {e}")])?;
    write_table(&out_dir.join("message_types.rs"), &entries)
        .map_err(|e| vec![format!("cannot write message table: {e}")])?;
    Ok(())
}
