//! `SandboxArgs`: the flags of `pushwoosh-worker sandbox`, turned into a [`SandboxConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use super::SandboxConfig;

/// Run a local Pushwoosh-compatible Messages API (no Pushwoosh account needed).
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8087")]
    pub listen: SocketAddr,
    /// Milliseconds added to every API answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability (0.0 to 1.0) of an HTTP 500 answer.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub error_rate: f64,
    /// Probability (0.0 to 1.0) of an HTTP 429 answer with Retry-After: 1.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub throttle_rate: f64,
    /// Probability (0.0 to 1.0) that a request is never answered.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub hang_rate: f64,
    /// createMessage calls allowed per minute; beyond it HTTP 429 with Retry-After.
    #[arg(long)]
    pub create_message_per_minute: Option<u32>,
    /// An accepted API token (repeatable); none given means any non-empty token.
    #[arg(long = "token", value_name = "TOKEN")]
    pub tokens: Vec<String>,
    /// Seconds a transactionId keeps its message code (Pushwoosh: 300).
    #[arg(long, default_value_t = 300)]
    pub dedup_window_secs: u64,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not between 0.0 and 1.0"))
    }
}

impl SandboxArgs {
    pub fn into_config(self) -> SandboxConfig {
        SandboxConfig {
            listen: self.listen,
            latency: Duration::from_millis(self.latency_ms),
            error_rate: self.error_rate,
            throttle_rate: self.throttle_rate,
            hang_rate: self.hang_rate,
            create_message_per_minute: self.create_message_per_minute,
            valid_tokens: self.tokens,
            dedup_window: Duration::from_secs(self.dedup_window_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sandbox: SandboxArgs,
    }

    #[test]
    fn defaults_match_sandbox_config_default() {
        let config = Cli::try_parse_from(["x"]).map(|c| c.sandbox.into_config());
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        let default = SandboxConfig::default();
        assert_eq!(config.listen, default.listen);
        assert_eq!(config.dedup_window, default.dedup_window);
        assert_eq!(config.create_message_per_minute, None);
        assert!(config.valid_tokens.is_empty() && config.latency.is_zero());
    }

    #[test]
    fn flags_parse() {
        let args = [
            "x",
            "--listen",
            "0.0.0.0:0",
            "--latency-ms",
            "25",
            "--error-rate",
            "0.5",
            "--throttle-rate",
            "0.1",
            "--hang-rate",
            "0",
            "--create-message-per-minute",
            "600",
            "--token",
            "a",
            "--token",
            "b",
            "--dedup-window-secs",
            "10",
        ];
        let config = Cli::try_parse_from(args).map(|c| c.sandbox.into_config());
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.latency, Duration::from_millis(25));
        assert_eq!(config.create_message_per_minute, Some(600));
        assert_eq!(config.valid_tokens, ["a", "b"]);
        assert_eq!(config.dedup_window, Duration::from_secs(10));
        assert!(Cli::try_parse_from(["x", "--error-rate", "1.5"]).is_err());
    }
}
