//! One Redis round trip for a whole batch: one Lua script call per key, pipelined, under
//! a bounded time-out, timed and counted. Scripts go by their SHA-1 (`EVALSHA`); a
//! Redis that lost its script cache (restarted, failed over) gets the few calls it
//! refused again with the script's text, which caches it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::{ServerErrorKind, Value};

use super::connection::Routed;
use super::{Ledger, LedgerError};

/// A Lua script that touches the one key it is given.
pub(super) struct LuaScript {
    source: &'static str,
    script: redis::Script,
}

impl LuaScript {
    pub(super) fn new(source: &'static str) -> Self {
        Self {
            source,
            script: redis::Script::new(source),
        }
    }

    pub(super) fn source(&self) -> &'static str {
        self.source
    }
}

/// One call of a script: its key and arguments.
pub(super) struct Invocation {
    pub key: Vec<u8>,
    pub args: Vec<Vec<u8>>,
}

impl Ledger {
    /// Calls `script` once per invocation, all in one round trip; the replies come back
    /// in the invocations' order.
    pub(super) async fn eval_each(
        &self,
        operation: &'static str,
        script: &LuaScript,
        calls: &[Invocation],
    ) -> Result<Vec<Value>, LedgerError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<Routed> = calls
            .iter()
            .map(|call| {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(script.script.get_hash())
                    .arg(1)
                    .arg(&call.key)
                    .arg(&call.args);
                Routed::on_key(cmd, &call.key)
            })
            .collect();
        let mut replies = self.round_trip(operation, &commands).await?;
        let missing: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, reply)| is_no_script(reply))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            let again: Vec<Routed> = missing
                .iter()
                .map(|&i| {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(script.source())
                        .arg(1)
                        .arg(&calls[i].key)
                        .arg(&calls[i].args);
                    Routed::on_key(cmd, &calls[i].key)
                })
                .collect();
            let answers = self.round_trip(operation, &again).await?;
            for (i, answer) in missing.into_iter().zip(answers) {
                replies[i] = answer;
            }
        }
        self.checked(operation, replies, calls.len())
    }

    /// The replies of a round trip of `expected` calls, unless one is an error (counted,
    /// and taken as Redis unavailable when it says so).
    pub(super) fn checked(
        &self,
        operation: &'static str,
        replies: Vec<Value>,
        expected: usize,
    ) -> Result<Vec<Value>, LedgerError> {
        match check_replies(operation, &replies, expected) {
            Ok(()) => Ok(replies),
            Err(e) => {
                self.failed(operation, &e);
                Err(e)
            }
        }
    }

    /// Sends the commands together and waits for their replies, at most
    /// `ledger.timeout_ms`.
    pub(super) async fn round_trip(
        &self,
        operation: &'static str,
        commands: &[Routed],
    ) -> Result<Vec<Value>, LedgerError> {
        let inner = &self.inner;
        let started = Instant::now();
        let query = inner.connection.query(commands);
        let result = match tokio::time::timeout(inner.timeout, query).await {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(e)) => Err(LedgerError::from(e)),
            Err(_) => Err(LedgerError::Unavailable(format!(
                "no answer within {} ms",
                inner.timeout.as_millis()
            ))),
        };
        inner
            .metrics
            .round_trip(operation, started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => self.set_available(true),
            Err(e) => self.failed(operation, e),
        }
        result
    }

    fn failed(&self, operation: &'static str, e: &LedgerError) {
        self.inner.metrics.redis_error(operation, e.label());
        if e.is_unavailable() {
            self.set_available(false);
        }
    }

    pub(super) fn set_available(&self, now: bool) {
        let inner = &self.inner;
        let before = inner.available.swap(now, Ordering::Relaxed);
        inner.metrics.set_available(now);
        if before != now {
            if now {
                tracing::info!(redis = %inner.endpoint, "Redis answers the ledger");
            } else {
                tracing::warn!(redis = %inner.endpoint, "Redis does not answer the ledger");
            }
        }
    }
}

fn is_no_script(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}

/// A reply per call, none of them an error.
fn check_replies(
    operation: &'static str,
    replies: &[Value],
    expected: usize,
) -> Result<(), LedgerError> {
    if replies.len() != expected {
        return Err(LedgerError::Unexpected(format!(
            "{operation}: {} replies to {expected} calls",
            replies.len()
        )));
    }
    match replies.iter().find_map(|r| match r {
        Value::ServerError(e) => Some(e),
        _ => None,
    }) {
        Some(e) => Err(LedgerError::from(redis::RedisError::from(e.clone()))),
        None => Ok(()),
    }
}
