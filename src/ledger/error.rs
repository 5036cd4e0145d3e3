//! What can go wrong with Redis, sorted for the caller: Redis not answering (hold or go
//! on without it, per `ledger.on_unavailable`) apart from Redis answering something the
//! worker did not expect (a bug or a foreign program, never a reason to wait).

use redis::{RedisError, ServerErrorKind};

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// Redis did not answer in time, could not be reached, or cannot serve now (loading,
    /// failing over, read-only, out of memory): it may work again by itself.
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    /// Redis answered, but not as the ledger's scripts answer.
    #[error("Redis answered unexpectedly: {0}")]
    Unexpected(String),
}

impl LedgerError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The metrics' label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Unexpected(_) => "unexpected",
        }
    }
}

impl From<RedisError> for LedgerError {
    fn from(e: RedisError) -> Self {
        let passing = matches!(
            e.kind(),
            redis::ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            )
        ) || matches!(
            e.code(),
            Some("OOM" | "BUSY" | "NOAUTH" | "WRONGPASS" | "NOPERM")
        );
        if passing
            || e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
            || e.is_cluster_error()
        {
            Self::Unavailable(e.to_string())
        } else {
            Self::Unexpected(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_answering_is_unavailable_and_odd_answers_are_not() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(LedgerError::from(io).is_unavailable());
        let odd = RedisError::from((redis::ErrorKind::UnexpectedReturnType, "odd"));
        assert!(!LedgerError::from(odd).is_unavailable());
    }
}
