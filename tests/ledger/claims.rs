//! Claims, records and releases against the real Redis.

use std::time::Duration;

use pushwoosh_worker::ledger::{Claim, ClaimOutcome, Record, Recorded};
use pushwoosh_worker::result_event::Outcome;

use crate::support::{
    OwnRedis, Prefix, claims_of, eventually, push_answer, records_of, round_trips,
};

const NOW: i64 = 1_796_330_000_000;

fn claim(job_id: &str, owner: u64) -> Claim<'_> {
    Claim {
        job_id,
        owner,
        now_ms: NOW + owner as i64,
    }
}

fn answer(codes: &[&str]) -> Recorded {
    Recorded {
        outcome: Outcome::Ok,
        status_code: Some(200),
        message_codes: codes.iter().map(|c| c.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_claim_is_taken_once_and_found_by_everyone_else() {
    let prefix = Prefix::new();
    let (ledger, _) = prefix.ledger().await;
    let id = "3f2c1b9e-8d4a-4e1f-9b7c-2a5d6e8f0a1b";
    assert_eq!(
        ledger.claim(&[claim(id, 1)]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    // The same processing again (a retry after a call that may have gone out).
    assert_eq!(
        ledger.claim(&[claim(id, 1)]).await.unwrap(),
        [ClaimOutcome::Sending {
            since_ms: NOW + 1,
            by_self: true
        }]
    );
    // A second publish of the id, processed elsewhere.
    assert_eq!(
        ledger.claim(&[claim(id, 2)]).await.unwrap(),
        [ClaimOutcome::Sending {
            since_ms: NOW + 1,
            by_self: false
        }]
    );
}

/// Redis 7 claims with its own `SET NX GET`, an older Redis with the Lua script: the same
/// outcomes, the same key, value and expiry either way. On a Redis of the test's own, so
/// that its command counts are the ledger's.
#[tokio::test]
async fn a_claim_is_the_same_with_set_nx_get_and_with_the_script_of_redis_before_7() {
    let redis = OwnRedis::start();
    let prefix = Prefix::on(redis.url());
    let (native, _) = prefix.ledger().await;
    let (script, _) = prefix.ledger().await;
    let script = script.claim_with_script();
    let mut seen = Vec::new();
    for (ledger, id) in [
        (&native, "job-claimed-natively"),
        (&script, "job-claimed-by-script"),
    ] {
        let before = command_calls(&prefix);
        let mut outcomes = ledger.claim(&[claim(id, 1), claim(id, 2)]).await.unwrap();
        outcomes.extend(ledger.claim(&[claim(id, 1)]).await.unwrap());
        let claims = command_calls(&prefix) - before;
        let mut redis = prefix.redis();
        let pttl: i64 = redis::cmd("PTTL")
            .arg(ledger.key_of(id))
            .query(&mut redis)
            .unwrap();
        let value: Vec<u8> = redis::cmd("GET")
            .arg(ledger.key_of(id))
            .query(&mut redis)
            .unwrap();
        ledger
            .record(&[Record {
                job_id: id,
                answer: answer(&["C3F8-0001"]),
            }])
            .await
            .unwrap();
        outcomes.extend(ledger.claim(&[claim(id, 2)]).await.unwrap());
        let window = ledger.window().as_millis() as i64;
        assert!(
            pttl > window - 60_000 && pttl <= window,
            "{id}: PTTL {pttl}"
        );
        seen.push((outcomes, value, claims));
    }
    assert_eq!(seen[0].0, seen[1].0, "the outcomes");
    assert_eq!(seen[0].1, seen[1].1, "the stored claim");
    assert_eq!(
        seen[0].0,
        [
            ClaimOutcome::Claimed,
            ClaimOutcome::Sending {
                since_ms: NOW + 1,
                by_self: false
            },
            ClaimOutcome::Sending {
                since_ms: NOW + 1,
                by_self: true
            },
            ClaimOutcome::Answered(answer(&["C3F8-0001"])),
        ]
    );
    // Three claims: three SETs from Redis 7's ledger; three script calls from the other,
    // the first of which SET the key (a command inside a script counts too).
    assert_eq!(seen[0].2, Calls { set: 3, evalsha: 0 });
    assert_eq!(seen[1].2, Calls { set: 1, evalsha: 3 });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Calls {
    set: u64,
    evalsha: u64,
}

impl std::ops::Sub for Calls {
    type Output = Self;
    fn sub(self, before: Self) -> Self {
        Self {
            set: self.set - before.set,
            evalsha: self.evalsha - before.evalsha,
        }
    }
}

/// How many SET and EVALSHA commands the Redis has run (`INFO commandstats`).
fn command_calls(prefix: &Prefix) -> Calls {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut prefix.redis())
        .unwrap();
    let calls = |command: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    Calls {
        set: calls("set"),
        evalsha: calls("evalsha"),
    }
}

#[tokio::test]
async fn an_answer_is_repeated_to_every_later_claim_and_the_first_one_stands() {
    let prefix = Prefix::new();
    let (ledger, _) = prefix.ledger().await;
    let (id, other) = ("job-answered", "job-never-claimed");
    assert_eq!(
        ledger.claim(&[claim(id, 1)]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    let first = answer(&["C3F8-C3863ED4-334AD4F1", "not-hex-shaped"]);
    ledger
        .record(&[Record {
            job_id: id,
            answer: first.clone(),
        }])
        .await
        .unwrap();
    let later = Recorded {
        outcome: Outcome::Failed,
        status_code: Some(500),
        message_codes: vec![],
    };
    ledger
        .record(&[
            Record {
                job_id: id,
                answer: later.clone(),
            },
            // An answer without a claim is remembered too.
            Record {
                job_id: other,
                answer: later.clone(),
            },
        ])
        .await
        .unwrap();
    for owner in [1, 2] {
        assert_eq!(
            ledger
                .claim(&[claim(id, owner), claim(other, owner)])
                .await
                .unwrap(),
            [
                ClaimOutcome::Answered(first.clone()),
                ClaimOutcome::Answered(later.clone())
            ]
        );
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg(ledger.key_of(id))
        .query(&mut prefix.redis())
        .unwrap();
    assert!(ttl > 86_000_000 && ttl <= 86_400_000, "{ttl}");
}

#[tokio::test]
async fn a_released_claim_is_claimed_by_anyone_and_only_its_owner_releases_it() {
    let prefix = Prefix::new();
    let (ledger, _) = prefix.ledger().await;
    let (id, answered) = ("job-released", "job-answered");
    ledger
        .claim(&[claim(id, 1), claim(answered, 1)])
        .await
        .unwrap();
    ledger
        .record(&[Record {
            job_id: answered,
            answer: answer(&[]),
        }])
        .await
        .unwrap();
    // Another processing cannot forget this one's claim, nor anyone an answer.
    ledger
        .release(&[claim(id, 2), claim(answered, 1)])
        .await
        .unwrap();
    assert_eq!(
        ledger
            .claim(&[claim(id, 3), claim(answered, 3)])
            .await
            .unwrap(),
        [
            ClaimOutcome::Sending {
                since_ms: NOW + 1,
                by_self: false
            },
            ClaimOutcome::Answered(answer(&[]))
        ]
    );
    ledger.release(&[claim(id, 1)]).await.unwrap();
    assert_eq!(
        ledger.claim(&[claim(id, 3)]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    // Releasing what is not there is harmless.
    ledger.release(&[claim("job-unknown", 1)]).await.unwrap();
}

#[tokio::test]
async fn ids_are_forgotten_after_the_window() {
    let prefix = Prefix::new();
    let (ledger, _) = prefix.ledger_with(|s| s.window_ms = 300).await;
    let (claimed, answered) = ("job-claimed", "job-answered");
    ledger
        .claim(&[claim(claimed, 1), claim(answered, 1)])
        .await
        .unwrap();
    ledger
        .record(&[Record {
            job_id: answered,
            answer: answer(&["C3F8-C3863ED4-334AD4F1"]),
        }])
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "both ids forgotten", || async {
        let outcomes = ledger.claim(&[claim(claimed, 9), claim(answered, 9)]).await;
        let forgotten = outcomes.unwrap() == [ClaimOutcome::Claimed, ClaimOutcome::Claimed];
        ledger
            .release(&[claim(claimed, 9), claim(answered, 9)])
            .await
            .unwrap();
        forgotten
    })
    .await;
}

#[tokio::test]
async fn a_batch_of_100_is_one_round_trip_for_each_operation() {
    let prefix = Prefix::new();
    let (ledger, metrics) = prefix.ledger().await;
    let ids: Vec<String> = (0..100).map(|i| format!("batch-job-{i:03}")).collect();
    let claims = claims_of(&ids, 7);
    let before = round_trips(&metrics, "claim");
    let outcomes = ledger.claim(&claims).await.unwrap();
    assert_eq!(round_trips(&metrics, "claim") - before, 1.0);
    assert!(
        outcomes.iter().all(|o| *o == ClaimOutcome::Claimed),
        "{outcomes:?}"
    );

    ledger
        .record(&records_of(&ids[..50], &push_answer()))
        .await
        .unwrap();
    ledger.release(&claims[50..]).await.unwrap();
    assert_eq!(round_trips(&metrics, "record"), 1.0);
    assert_eq!(round_trips(&metrics, "release"), 1.0);

    let outcomes = ledger.claim(&claims).await.unwrap();
    assert_eq!(round_trips(&metrics, "claim") - before, 2.0);
    let answered = outcomes
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Answered(_)))
        .count();
    let claimed = outcomes
        .iter()
        .filter(|o| **o == ClaimOutcome::Claimed)
        .count();
    assert_eq!((answered, claimed), (50, 50));
}

#[tokio::test]
async fn one_id_twice_in_a_batch_is_claimed_by_the_first() {
    let prefix = Prefix::new();
    let (ledger, _) = prefix.ledger().await;
    let outcomes = ledger
        .claim(&[claim("job-twice", 1), claim("job-twice", 2)])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            ClaimOutcome::Claimed,
            ClaimOutcome::Sending {
                since_ms: NOW + 1,
                by_self: false
            }
        ]
    );
}

#[tokio::test]
async fn two_processes_claiming_one_id_at_once_get_one_claim() {
    let prefix = Prefix::new();
    let (a, _) = prefix.ledger().await;
    let (b, _) = prefix.ledger().await;
    let ids: Vec<String> = (0..200).map(|i| format!("raced-job-{i}")).collect();
    let race = |ledger: pushwoosh_worker::ledger::Ledger, owner: u64| {
        let ids = ids.clone();
        tokio::spawn(async move {
            let mut won = Vec::new();
            for id in &ids {
                let outcome = ledger.claim(&[claim(id, owner)]).await.unwrap();
                won.push(outcome == [ClaimOutcome::Claimed]);
            }
            won
        })
    };
    let (won_a, won_b) = tokio::join!(race(a, 1), race(b, 2));
    let (won_a, won_b) = (won_a.unwrap(), won_b.unwrap());
    for (i, (a, b)) in won_a.iter().zip(&won_b).enumerate() {
        assert!(a ^ b, "{}: claimed by a: {a}, by b: {b}", ids[i]);
    }
}

#[tokio::test]
async fn a_value_the_ledger_cannot_read_counts_as_a_call_that_may_have_gone_out() {
    let prefix = Prefix::new();
    let (ledger, _) = prefix.ledger().await;
    let () = redis::cmd("SET")
        .arg(ledger.key_of("job-foreign"))
        .arg("written by someone else")
        .query(&mut prefix.redis())
        .unwrap();
    assert_eq!(
        ledger.claim(&[claim("job-foreign", 1)]).await.unwrap(),
        [ClaimOutcome::Sending {
            since_ms: 0,
            by_self: false
        }]
    );
}

#[tokio::test]
async fn a_remembered_job_costs_a_few_dozen_bytes_of_key_and_value() {
    let prefix = Prefix::new();
    let (ledger, _) = prefix
        .ledger_with(|s| s.key_prefix = "pushwoosh:".into())
        .await;
    let id = format!("{}-8d4a-4e1f-9b7c-2a5d6e8f0a1b", &prefix.prefix[3..11]);
    ledger.claim(&[claim(&id, 1)]).await.unwrap();
    ledger
        .record(&[Record {
            job_id: &id,
            answer: answer(&["C3F8-C3863ED4-334AD4F1"]),
        }])
        .await
        .unwrap();
    let key = ledger.key_of(&id);
    let value: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query(&mut prefix.redis())
        .unwrap();
    let () = redis::cmd("DEL")
        .arg(&key)
        .query(&mut prefix.redis())
        .unwrap();
    assert_eq!((key.len(), value.len()), (29, 12));
}
