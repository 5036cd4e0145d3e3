//! Claims and records: which job ids went out. A job's id is claimed before its call, its
//! answer recorded as soon as Pushwoosh gives it, and the claim released when the call
//! cannot have reached Pushwoosh. Each operation is one round trip for any number of
//! jobs: one command per job, each touching only that job's key (so each runs on the
//! job's own node of a cluster).
//!
//! A claim is Redis's own `SET key claim NX GET PX window` (Redis 7.0 and later), which
//! costs Redis about a third less CPU than the same thing as a Lua script; a Redis before 7.0
//! refuses that command as a syntax error, touching nothing, and from then on claims go
//! through the [`CLAIM`] script, which does the same.

use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use redis::Value;

use super::connection::Routed;
use super::encoding::{self, Held, Recorded};
use super::round_trip::{Invocation, LuaScript};
use super::{Ledger, LedgerError};

/// Takes the job's key if it is free, else returns what it holds. ARGV: the claim, the
/// window (ms). What `SET NX GET PX` does, for a Redis before 7.0.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Stores an answer unless one is stored already (the first answer stands). ARGV: the
/// record, the window (ms). Returns 1 when stored.
const RECORD: &str = r"
local held = redis.call('GET', KEYS[1])
if held and string.byte(held, 1) < 64 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Deletes the job's claim if it is the owner's: never an answer, never another
/// processing's claim. ARGV: the owner (8 bytes). Returns 1 when deleted.
const RELEASE: &str = r"
local held = redis.call('GET', KEYS[1])
if held and string.byte(held, 1) == 192 and string.sub(held, 2, 9) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

pub(super) const SCRIPTS: [&str; 3] = [CLAIM, RECORD, RELEASE];

static CLAIM_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(CLAIM));
static RECORD_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(RECORD));
static RELEASE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(RELEASE));

/// One processing of a job asks for its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub job_id: &'a str,
    /// Identifies this processing of the job: derived from the job's first receipt, the
    /// same on its own broker-held retries, different for a second publish.
    pub owner: u64,
    /// Wall-clock time of the claim (ms since the epoch), returned as `since_ms` to
    /// whoever finds the claim.
    pub now_ms: i64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Nothing held the id: it is this processing's now; call Pushwoosh.
    Claimed,
    /// Pushwoosh's answer for this id was recorded within the window: a duplicate,
    /// whose result repeats this answer.
    Answered(Recorded),
    /// A claim holds the id and no answer was recorded: a call may be under way or may
    /// have reached Pushwoosh (another replica's, or a worker that died mid-call). The
    /// claim is left as it was. `by_self`: the claim is this same owner's, i.e. an
    /// earlier attempt of this very processing that neither recorded nor released it
    /// (so its call may have reached Pushwoosh: for example a retry after a time-out,
    /// or a redelivery after the worker died). A claim whose value the ledger cannot read
    /// is reported as another's, from time 0.
    Sending { since_ms: i64, by_self: bool },
}

/// Pushwoosh's answer for one job, to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub job_id: &'a str,
    pub answer: Recorded,
}

impl Ledger {
    /// Claims each job's id, in one round trip; one outcome per claim, in order. Two
    /// claims of one id in the same call: the second finds the first.
    pub async fn claim(&self, claims: &[Claim<'_>]) -> Result<Vec<ClaimOutcome>, LedgerError> {
        let window = self.inner.window_ms.to_string().into_bytes();
        let calls: Vec<Invocation> = claims
            .iter()
            .map(|c| Invocation {
                key: encoding::job_key(self.key_prefix(), c.job_id),
                args: vec![encoding::encode_claim(c.owner, c.now_ms), window.clone()],
            })
            .collect();
        let replies = match self.claim_natively(&calls).await? {
            Some(replies) => replies,
            None => self.eval_each("claim", &CLAIM_SCRIPT, &calls).await?,
        };
        Ok(claims
            .iter()
            .zip(replies)
            .map(|(claim, reply)| self.outcome(claim, reply))
            .collect())
    }

    /// Claims with `SET NX GET PX`; `None` when this Redis does not know that command
    /// (before 7.0), which it refused without touching a key.
    async fn claim_natively(
        &self,
        calls: &[Invocation],
    ) -> Result<Option<Vec<Value>>, LedgerError> {
        let native = &self.inner.native_claims;
        if calls.is_empty() || !native.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let commands: Vec<Routed> = calls
            .iter()
            .map(|call| {
                let [claim, window] = &call.args[..] else {
                    unreachable!("a claim has two arguments")
                };
                let mut set = redis::cmd("SET");
                set.arg(&call.key)
                    .arg(claim)
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(window);
                Routed::on_key(set, &call.key)
            })
            .collect();
        let replies = self.round_trip("claim", &commands).await?;
        if replies.iter().any(is_syntax_error) {
            if native.swap(false, Ordering::Relaxed) {
                tracing::info!(
                    redis = %self.inner.endpoint,
                    "Redis before 7.0 (no SET NX GET): the ledger claims job ids with a Lua script"
                );
            }
            return Ok(None);
        }
        self.checked("claim", replies, calls.len()).map(Some)
    }

    fn outcome(&self, claim: &Claim<'_>, reply: Value) -> ClaimOutcome {
        let held = match reply {
            Value::Nil => return ClaimOutcome::Claimed,
            Value::BulkString(bytes) => encoding::decode(&bytes),
            _ => Held::Unreadable,
        };
        match held {
            Held::Record(answer) => ClaimOutcome::Answered(answer),
            Held::Claim { owner, since_ms } => ClaimOutcome::Sending {
                since_ms,
                by_self: owner == claim.owner,
            },
            Held::Unreadable => {
                tracing::warn!(
                    job_id = claim.job_id,
                    "the ledger holds a value it cannot read for this job: taken as a call that may have gone out"
                );
                ClaimOutcome::Sending {
                    since_ms: 0,
                    by_self: false,
                }
            }
        }
    }

    /// Remembers Pushwoosh's answers for `ledger.window_ms`, in one round trip. An id
    /// that already has an answer keeps it.
    pub async fn record(&self, records: &[Record<'_>]) -> Result<(), LedgerError> {
        let window = self.inner.window_ms.to_string().into_bytes();
        let calls: Vec<Invocation> = records
            .iter()
            .map(|r| Invocation {
                key: encoding::job_key(self.key_prefix(), r.job_id),
                args: vec![encoding::encode_record(&r.answer), window.clone()],
            })
            .collect();
        self.eval_each("record", &RECORD_SCRIPT, &calls)
            .await
            .map(drop)
    }

    /// Forgets claims whose calls cannot have reached Pushwoosh (refused before a call,
    /// HTTP 429/500/503, connection refused), so that the id is sent when it comes
    /// again; in one round trip. Only the claim's own owner releases it (`now_ms` is not
    /// read), and an answer is never forgotten.
    pub async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        let calls: Vec<Invocation> = claims
            .iter()
            .map(|c| Invocation {
                key: encoding::job_key(self.key_prefix(), c.job_id),
                args: vec![encoding::owner_bytes(c.owner).to_vec()],
            })
            .collect();
        self.eval_each("release", &RELEASE_SCRIPT, &calls)
            .await
            .map(drop)
    }
}

/// What a Redis before 7.0 answers `SET NX GET`.
fn is_syntax_error(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e)
        if e.code() == "ERR" && e.details().is_some_and(|d| d.contains("syntax error")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_before_7_refusing_set_nx_get_is_told_from_other_errors() {
        // Redis 6.2 and 6.0 answer `SET k v NX GET PX 1` with this.
        let refused = redis::parse_redis_value(b"-ERR syntax error\r\n").unwrap();
        assert!(is_syntax_error(&refused));
        for other in [
            &b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"[..],
            b"-ERR wrong number of arguments for 'set' command\r\n",
            b"-MOVED 3999 127.0.0.1:6381\r\n",
            b"$3\r\nabc\r\n",
            b"_\r\n",
        ] {
            let reply = redis::parse_redis_value(other).unwrap();
            assert!(!is_syntax_error(&reply), "{reply:?}");
        }
    }
}
