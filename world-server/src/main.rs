//! `world-server`: the chat world, with a TOML config or its embedded defaults.

fn main() -> std::process::ExitCode {
    engine::cli::main(
        "world-server",
        "A tick-driven world server: rooms, chat, whispers and presence over protobuf frames.",
        |config| world_server::ChatWorld::from(config),
    )
}
