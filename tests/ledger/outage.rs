//! Redis going away and coming back, on a redis-server of each test's own (the shared
//! one is never stopped).

use std::sync::Arc;
use std::time::Duration;

use pushwoosh_worker::ledger::{Account, Claim, ClaimOutcome, Granted, LedgerError, SharedLimiter};
use pushwoosh_worker::pushwoosh::Priority;
use pushwoosh_worker::settings::{OnUnavailable, RateLimitSettings};

use crate::support::{OwnRedis, Prefix, eventually, metric};

fn claim(job_id: &str) -> Claim<'_> {
    Claim {
        job_id,
        owner: 1,
        now_ms: 1,
    }
}

#[tokio::test]
async fn redis_stopped_is_unavailable_and_the_ledger_reconnects_by_itself() {
    let mut redis = OwnRedis::start();
    let prefix = Prefix::on(redis.url());
    let (ledger, metrics) = prefix.ledger_with(|s| s.timeout_ms = 500).await;
    assert_eq!(
        ledger.claim(&[claim("before")]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    assert!(ledger.is_available());
    assert_eq!(metric(&metrics, "pushwoosh_worker_ledger_available"), 1.0);

    redis.stop();
    for _ in 0..3 {
        let err = ledger.claim(&[claim("during")]).await.unwrap_err();
        assert!(matches!(err, LedgerError::Unavailable(_)), "{err:?}");
    }
    assert!(ledger.ping().await.is_err());
    assert!(!ledger.is_available());
    assert_eq!(metric(&metrics, "pushwoosh_worker_ledger_available"), 0.0);
    assert!(
        metric(
            &metrics,
            r#"pushwoosh_worker_ledger_redis_errors_total{operation="claim",error="unavailable"}"#
        ) >= 3.0
    );

    redis.restart();
    eventually(
        Duration::from_secs(30),
        "the ledger works again",
        || async { ledger.claim(&[claim("after")]).await.is_ok() },
    )
    .await;
    assert!(ledger.is_available());
    // The restarted Redis kept nothing and lost its scripts: both are handled.
    assert_eq!(
        ledger.claim(&[claim("before")]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
}

#[tokio::test]
async fn a_ledger_made_while_redis_is_down_connects_when_it_comes() {
    let mut redis = OwnRedis::start();
    redis.stop();
    let prefix = Prefix::on(redis.url());
    let (ledger, _) = prefix.ledger_with(|s| s.timeout_ms = 300).await;
    assert!(!ledger.is_available());
    assert!(ledger.ping().await.unwrap_err().is_unavailable());
    let waiting = {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.wait_available(Duration::from_millis(100)).await })
    };
    redis.restart();
    waiting.await.unwrap();
    assert!(ledger.is_available());
    assert_eq!(
        ledger.claim(&[claim("first")]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
}

#[tokio::test]
async fn scripts_redis_forgot_are_sent_again() {
    let redis = OwnRedis::start();
    let prefix = Prefix::on(redis.url());
    let (ledger, _) = prefix.ledger().await;
    ledger.claim(&[claim("one")]).await.unwrap();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut prefix.redis())
        .unwrap();
    let ids: Vec<String> = (0..10).map(|i| format!("job-{i}")).collect();
    let claims: Vec<Claim> = ids.iter().map(|id| claim(id)).collect();
    let outcomes = ledger.claim(&claims).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == ClaimOutcome::Claimed),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn the_shared_limiter_holds_or_falls_back_to_the_process_share_while_redis_is_down() {
    let mut redis = OwnRedis::start();
    let prefix = Prefix::on(redis.url());
    let account = Account::named("outage");
    let settings = RateLimitSettings::default();
    let (send, metrics) = prefix
        .ledger_with(|s| {
            s.on_unavailable = OnUnavailable::Send;
            s.timeout_ms = 300;
        })
        .await;
    let send = SharedLimiter::new(&settings, send, metrics);
    let (hold, metrics) = prefix.ledger_with(|s| s.timeout_ms = 300).await;
    let hold = Arc::new(SharedLimiter::new(&settings, hold, metrics));
    assert!(matches!(
        hold.acquire(&account, "createMessage", Priority::Bulk)
            .await,
        Granted::Shared { .. }
    ));

    redis.stop();
    assert_eq!(
        send.acquire(&account, "createMessage", Priority::Bulk)
            .await,
        Granted::Local
    );
    let held = {
        let (hold, account) = (hold.clone(), account.clone());
        tokio::spawn(async move {
            hold.acquire(&account, "createMessage", Priority::Bulk)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!held.is_finished(), "no slot without Redis under hold");
    redis.restart();
    assert!(matches!(held.await.unwrap(), Granted::Shared { .. }));
}
