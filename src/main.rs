use std::process::ExitCode;

use clap::Parser;
use pushwoosh_worker::cli::{Cli, main as run};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pushwoosh-worker: {error:#}");
            ExitCode::FAILURE
        }
    }
}
