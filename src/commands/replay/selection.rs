//! Which dead letters a run chooses: what a dead letter's headers say about it, and the
//! filters it must match.

use lapin::BasicProperties;

use super::cli::ReplayArgs;
use crate::broker::DeadReason;
use crate::broker::publisher::{header_int, header_str, headers};

/// What a dead letter's headers say about it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Letter {
    pub(super) job_id: Option<String>,
    pub(super) kind: String,
    pub(super) reason: String,
    pub(super) dead_at_ms: Option<i64>,
    pub(super) original_routing_key: Option<String>,
}

impl Letter {
    pub(super) fn of(properties: &BasicProperties) -> Self {
        let job_id = header_str(properties, headers::JOB_ID).or_else(|| {
            properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned())
        });
        Self {
            job_id,
            kind: header_str(properties, headers::KIND).unwrap_or_else(|| "unknown".into()),
            reason: header_str(properties, headers::DEAD_REASON)
                .unwrap_or_else(|| "unknown".into()),
            dead_at_ms: header_int(properties, headers::DEAD_AT),
            original_routing_key: header_str(properties, headers::ORIGINAL_ROUTING_KEY),
        }
    }

    /// `job 'ID' (kind, reason, dead Ns ago)`.
    pub(super) fn describe(&self, now_ms: i64) -> String {
        let id = match &self.job_id {
            Some(id) => format!("'{id}'"),
            None => "<no id>".to_owned(),
        };
        let age = match self.dead_at_ms {
            Some(at) => format!("dead {}s ago", (now_ms - at).max(0) / 1000),
            None => "dead at an unknown time".to_owned(),
        };
        format!("job {id} ({}, {}, {age})", self.kind, self.reason)
    }
}

/// The filters of one run; every one given must match.
#[derive(Debug, Clone, Default)]
pub(super) struct Filter {
    kinds: Vec<String>,
    reasons: Vec<String>,
    older_than_ms: Option<i64>,
    newer_than_ms: Option<i64>,
}

impl Filter {
    pub(super) fn new(args: &ReplayArgs) -> Self {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            kinds: args.kinds.clone(),
            reasons: args.reasons.clone(),
            older_than_ms: args.older_than.map(ms),
            newer_than_ms: args.newer_than.map(ms),
        }
    }

    pub(super) fn matches(&self, letter: &Letter, now_ms: i64) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&letter.kind) {
            return false;
        }
        if self.reasons.is_empty() {
            // Replaying an unparseable or oversized body as it is would only
            // dead-letter it again.
            if DeadReason::parse(&letter.reason).is_some_and(|r| !r.replayable()) {
                return false;
            }
        } else if !self.reasons.contains(&letter.reason) {
            return false;
        }
        // A dead letter without a dead-at matches no age filter.
        let age = letter.dead_at_ms.map(|at| now_ms.saturating_sub(at));
        let old_enough = self
            .older_than_ms
            .is_none_or(|min| age.is_some_and(|age| age >= min));
        let new_enough = self
            .newer_than_ms
            .is_none_or(|max| age.is_some_and(|age| age <= max));
        old_enough && new_enough
    }
}
