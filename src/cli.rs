//! The command line: `pushwoosh-worker <command>`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
    /// Check jobs offline (one JSON, an array, or NDJSON) as the worker would; exit 1 if any is invalid.
    Validate {
        /// Jobs file; `-` or nothing for stdin.
        file: Option<PathBuf>,
    },
    /// Publish jobs to the jobs exchange with confirms; --wait prints each result.
    Publish(crate::commands::publish::PublishArgs),
    /// Declare the exchanges, queues and bindings the configuration implies; --check verifies them and creates nothing.
    Topology(crate::commands::topology::TopologyArgs),
    /// Move dead letters back to the jobs exchange, all or filtered; --dry-run shows what would move.
    Replay(crate::commands::replay::ReplayArgs),
    /// Serve a local Pushwoosh-compatible API (no account needed) for trying the worker out.
    Sandbox(crate::sandbox::SandboxArgs),
}

/// Runs a command on its own tokio runtime: `run` with `runtime.worker_threads` threads,
/// the others with tokio's default.
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(cli.command, Command::Run) {
        let settings = Settings::load(cli.config.as_deref())?;
        return runtime(settings.runtime.worker_threads)?.block_on(async {
            let _logs = telemetry::init_buffered(settings.log.format);
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_on_signals()).await?;
            Ok(ExitCode::SUCCESS)
        });
    }
    runtime(0)?.block_on(command(cli))
}

/// A multi-threaded runtime with `worker_threads` threads; 0 leaves it to tokio (one a
/// core, or `TOKIO_WORKER_THREADS`).
fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

async fn command(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run => unreachable!("`run` has its own runtime, see main"),
        Command::Validate { file } => {
            let settings = Settings::load(cli.config.as_deref())?;
            let invalid = crate::commands::validate::run(
                file.as_deref(),
                settings.validation.unknown_params,
                &mut std::io::stdout().lock(),
            )?;
            Ok(if invalid == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Publish(args) => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log.format);
            crate::commands::publish::run(&settings, args).await
        }
        Command::Topology(args) => {
            let settings = Settings::load(cli.config.as_deref())?;
            // A missing object closes its channel, which lapin logs as an error: here it
            // is an answer, printed as such.
            telemetry::init_with(settings.log.format, "info,lapin::channel=off");
            crate::commands::topology::run(&settings, args).await
        }
        Command::Replay(args) => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log.format);
            crate::commands::replay::run(&settings, args).await
        }
        Command::Sandbox(args) => {
            telemetry::init(crate::settings::LogFormat::Text);
            crate::sandbox::serve_forever(args.into_config()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
