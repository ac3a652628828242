//! The arena's messages: `proto/arena.proto`, ids checked against the engine's.

fn main() {
    if let Err(errors) = protocol_build::compile_game("proto") {
        protocol_build::fail(&errors);
    }
}
