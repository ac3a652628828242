//! Compiles `proto/*.proto`, the engine's messages, with the message-id table of
//! `protocol-build` (which a game's own build uses too): the build fails, naming the
//! culprits, when an id names no message, two entries share an id, or an id lies outside the
//! range of its message's direction.

fn main() {
    if let Err(errors) = protocol_build::compile_engine("proto") {
        protocol_build::fail(&errors);
    }
}
