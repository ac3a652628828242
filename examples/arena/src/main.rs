//! `arena`: the arena game's server, with the same options as `world-server`, and its rules
//! in the `[game]` section of the file (`world_size`, `view_radius`, `speed`).

fn main() -> std::process::ExitCode {
    engine::cli::main_with(
        "arena",
        "The arena: players move entities in a 2D world and see who is near, over protobuf frames.",
        |_, rules| arena::Arena::new(rules),
    )
}
