//! The command line of `replay`: its arguments, with the kinds and reasons they accept,
//! and the lines it prints.

use crate::broker::DeadReason;
use crate::job::JobKind;

/// The dead-letter reasons the worker writes, plus `unknown` for a dead letter without
/// one (put there by the broker itself, e.g. a job over the jobs queue's delivery limit).
const REASONS: [&str; DeadReason::ALL.len() + 1] = {
    let mut all = ["unknown"; DeadReason::ALL.len() + 1];
    let mut i = 0;
    while i < DeadReason::ALL.len() {
        all[i] = DeadReason::ALL[i].as_str();
        i += 1;
    }
    all
};

/// Every job kind, plus `unknown` for a body that named none the worker knows.
const KINDS: [&str; JobKind::ALL.len() + 1] = {
    let mut all = ["unknown"; JobKind::ALL.len() + 1];
    let mut i = 0;
    while i < JobKind::ALL.len() {
        all[i] = JobKind::ALL[i].as_str();
        i += 1;
    }
    all
};

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Unparseable and too-large dead letters are skipped unless `--reason unparseable` or \
`--reason too_large` is given: replaying them as they are would only dead-letter them again. Reason `unknown` is a dead letter \
without the worker's headers (put there by the broker itself).

A replayed job gets a fresh retry budget. Each dead letter is acked only after the \
broker has confirmed its copy on the jobs exchange: on Ctrl-C the run stops after the \
message in hand (exit 130), and whatever was not moved stays in the dead-letter queue, \
even if the process is killed.")]
pub struct ReplayArgs {
    /// Only dead letters of this job kind (repeatable).
    #[arg(long = "kind", value_name = "KIND", value_parser = KINDS)]
    pub kinds: Vec<String>,
    /// Only dead letters dead-lettered for this reason (repeatable). `unparseable` ones
    /// are replayed only when asked for by name.
    #[arg(long = "reason", value_name = "REASON", value_parser = REASONS)]
    pub reasons: Vec<String>,
    /// Only dead letters dead-lettered at least this many seconds ago.
    #[arg(long, value_name = "SECS")]
    pub older_than: Option<u64>,
    /// Only dead letters dead-lettered at most this many seconds ago.
    #[arg(long, value_name = "SECS")]
    pub newer_than: Option<u64>,
    /// Move at most this many dead letters.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print what would move, and move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Routing key of the replayed jobs (default: the job's original routing key, else
    /// "replay").
    #[arg(long, value_name = "KEY")]
    pub routing_key: Option<String>,
}

/// `moved`, or `would move` on a dry run: the verb of every line the run prints.
pub(super) fn verb(dry_run: bool) -> &'static str {
    if dry_run { "would move" } else { "moved" }
}

/// The run's last line: how many dead letters it moved, of how many, and why it stopped.
pub(super) fn summary(
    verb: &str,
    moved: u64,
    held: u32,
    skipped: u64,
    interrupted: bool,
) -> String {
    format!(
        "{verb} {moved} of {held} dead letter(s) ({skipped} skipped by filters){}",
        if interrupted { "; interrupted" } else { "" }
    )
}
