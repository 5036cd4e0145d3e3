use std::process::ExitCode;

use clap::Parser;
use pushwoosh_worker::cli::{Cli, main as run};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pushwoosh-worker: {error:#}");
            ExitCode::FAILURE
        }
    }
}
