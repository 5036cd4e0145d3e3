//! What one remembered job costs Redis, measured (`scripts/ledger-memory` runs it on a
//! Redis of its own: `INFO memory` counts the whole server).

use crate::support::{Prefix, claims_of, push_answer, records_of};

const JOBS: usize = 100_000;
const BATCH: usize = 100;

fn used_memory(redis: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query(redis).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

/// 100,000 jobs, each claimed then recorded as a typical push: a 36-character id,
/// outcome ok, status 200, one 22-character message code.
#[tokio::test]
#[ignore = "measures the whole Redis server's memory: run by scripts/ledger-memory"]
async fn one_remembered_job_costs_at_most_150_bytes() {
    let prefix = Prefix::new();
    // The production prefix: the key's length decides its allocation.
    let (ledger, _) = prefix
        .ledger_with(|s| s.key_prefix = "pushwoosh:".into())
        .await;
    let mut redis = prefix.redis();
    let before = used_memory(&mut redis);
    let seed = fastrand::u32(..);
    let ids: Vec<String> = (0..JOBS)
        .map(|i| format!("{seed:08x}-{:04x}-4e1f-9b7c-{i:012x}", i % 65_536))
        .collect();
    let answer = push_answer();
    for batch in ids.chunks(BATCH) {
        ledger.claim(&claims_of(batch, 1)).await.unwrap();
        ledger.record(&records_of(batch, &answer)).await.unwrap();
    }
    let after = used_memory(&mut redis);
    let per_job = (after - before) as f64 / JOBS as f64;
    println!(
        "ledger-memory: {JOBS} jobs, used_memory {before} -> {after}: {per_job:.1} bytes per job"
    );
    for batch in ids.chunks(1_000) {
        let keys: Vec<Vec<u8>> = batch.iter().map(|id| ledger.key_of(id)).collect();
        let () = redis::cmd("DEL").arg(keys).query(&mut redis).unwrap();
    }
    assert!(per_job <= 150.0, "{per_job:.1} bytes per job");
}
