//! The CLI's subcommands other than `run`, one file each.

pub mod jobs_file;
pub mod publish;
pub mod replay;
pub mod topology;
pub mod validate;
