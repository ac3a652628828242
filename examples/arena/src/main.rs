//! `arena`: the arena game's server, with the same options as `world-server`.

fn main() -> std::process::ExitCode {
    engine::cli::main(
        "arena",
        "The arena: players move entities in a 2D world and see who is near, over protobuf frames.",
        |config| arena::Arena::from(config),
    )
}
