//! The command line: `pushwoosh-worker <command>`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::Settings;
use crate::startup::{Application, shutdown_on_signals};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "pushwoosh-worker",
    version,
    about = "Turns RabbitMQ jobs into Pushwoosh API calls, one result event per job"
)]
pub struct Cli {
    /// Configuration file (default: config/default.toml when present, or PUSHWOOSH_WORKER_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker: consume jobs, call Pushwoosh, publish results.
    Run,
    /// Serve a local Pushwoosh-compatible API (no account needed) for trying the worker out.
    Sandbox(crate::sandbox::SandboxArgs),
}

pub async fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log.format);
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_on_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox(args) => {
            telemetry::init(crate::settings::LogFormat::Text);
            crate::sandbox::serve_forever(args.into_config()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
