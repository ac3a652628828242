//! `world-client [URL]`: the terminal chat client. See `world-client --help`.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use world_client::cli::{one_line, Cli, Env, Settings};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("world-client: {}", one_line(&error));
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::from_cli(cli, &Env::from_process()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("world-client: {error}");
            return ExitCode::from(2);
        }
    };
    match world_client::client::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("world-client: {error}");
            ExitCode::FAILURE
        }
    }
}
