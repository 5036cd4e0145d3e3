//! Logging through tracing: readable text by default, JSON by configuration, level from
//! `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::settings::LogFormat;

pub fn init(format: LogFormat) {
    init_with(format, "info");
}

/// For the worker: lines are formatted on the job's thread but written by a thread of
/// their own, many at a time, so that a job never waits for a write to stderr (one
/// system call per line otherwise, under a lock every job shares). No line is dropped:
/// when that thread falls `BUFFERED_LINES` behind, jobs wait for it. Keep the guard until the
/// end: dropping it writes out what is still buffered.
/// Lines waiting for the writer thread at most (the buffer is allocated whole, ~32 bytes
/// a line: the library's default of 128k lines would hold 4 MiB for nothing).
const BUFFERED_LINES: usize = 8 * 1024;

pub fn init_buffered(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    install(format, "info", writer);
    guard
}

/// `init` with another filter for when `RUST_LOG` is unset.
pub fn init_with(format: LogFormat, default_filter: &str) {
    install(format, default_filter, std::io::stderr);
}

fn install<W>(format: LogFormat, default_filter: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a person at a terminal: a log file or a log shipper gets plain
    // text (and the worker saves the escape codes on every line).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
