//! The same ledger on a Redis Cluster and behind Sentinel, each made of redis-servers of
//! the test's own (Debian's `redis-server` and `redis-cli`).

use std::process::{Command, Stdio};
use std::time::Duration;

use pushwoosh_worker::ledger::ClaimOutcome;

use crate::support::{OwnRedis, Prefix, claims_of, eventually, push_answer, records_of};

/// Claims 100 ids (spread over every node of a cluster), records half, claims again.
async fn batch_round(prefix: &Prefix) {
    let (ledger, _) = prefix.ledger().await;
    // A cluster (or sentinel) just made may take more than one round trip's time limit to
    // answer its first command on a busy machine.
    eventually(Duration::from_secs(60), "the ledger answers", || async {
        ledger.ping().await.is_ok()
    })
    .await;
    let ids: Vec<String> = (0..100).map(|i| format!("topology-job-{i}")).collect();
    let claims = claims_of(&ids, 1);
    let outcomes = ledger.claim(&claims).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == ClaimOutcome::Claimed),
        "{outcomes:?}"
    );
    let answer = push_answer();
    ledger
        .record(&records_of(&ids[..50], &answer))
        .await
        .unwrap();
    ledger.release(&claims[50..]).await.unwrap();
    let outcomes = ledger.claim(&claims).await.unwrap();
    assert!(
        outcomes[..50]
            .iter()
            .all(|o| *o == ClaimOutcome::Answered(answer.clone()))
    );
    assert!(outcomes[50..].iter().all(|o| *o == ClaimOutcome::Claimed));
}

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli (Debian's redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_batch_spread_over_a_cluster_is_claimed_recorded_and_released() {
    let nodes: Vec<OwnRedis> = (0..3)
        .map(|_| OwnRedis::start_with(&["--cluster-enabled", "yes"]))
        .collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    redis_cli(&create);
    // Every node, not just the first, must see the cluster whole.
    for node in &nodes {
        let port = node.port.to_string();
        eventually(Duration::from_secs(60), "the cluster is up", || async {
            redis_cli(&["-p", &port, "cluster", "info"]).contains("cluster_state:ok")
        })
        .await;
    }
    let url = format!("redis+cluster://{}", addresses.join(","));
    batch_round(&Prefix::on(url)).await;
}

#[tokio::test]
async fn behind_sentinel_the_ledger_finds_the_master() {
    let master = OwnRedis::start();
    let sentinel = OwnRedis::sentinel(master.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/ledgermaster", sentinel.port);
    let prefix = Prefix::on(url);
    batch_round(&prefix).await;
    drop(prefix);
}
