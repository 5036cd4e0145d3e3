//! Nothing lost or duplicated: two replays at once, and a replay interrupted or killed.

use std::collections::HashSet;

use pushwoosh_worker::broker::publisher::headers;

use crate::common::header_str;
use crate::support::{Queues, WAIT, ids, replay, run_replay};

#[tokio::test]
async fn a_filtered_replay_conserves_every_dead_letter() {
    let q = Queues::new().await;
    let kinds = ["push", "sms", "whatsapp"];
    let total = 60;
    for i in 0..total {
        q.dead(&format!("j{i:03}"), kinds[i % 3], "retries_exhausted", 5)
            .await;
    }
    // Two replays at once over the same queue: each dead letter is taken by one of them.
    let (one, two) = tokio::join!(
        run_replay(&q.settings, &["--kind", "push", "--kind", "sms"]),
        run_replay(&q.settings, &["--kind", "push", "--kind", "sms"]),
    );
    let moved_lines = one
        .1
        .lines()
        .chain(two.1.lines())
        .filter(|l| l.starts_with("moved job"))
        .count();
    assert_eq!(moved_lines, 40, "{}\n{}", one.1, two.1);
    q.settle(total).await;
    let jobs = q.take_jobs().await;
    let dead = q.take_dead().await;
    assert_eq!(jobs.len() + dead.len(), total);
    assert_eq!(jobs.len(), 40);
    let mut all: Vec<_> = ids(&jobs);
    all.extend(ids(&dead));
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        total,
        "no duplicate"
    );
    assert!(
        dead.iter()
            .all(|d| header_str(&d.properties, headers::KIND).as_deref() == Some("whatsapp"))
    );
}

#[tokio::test]
async fn an_interrupted_replay_loses_nothing() {
    let q = Queues::new().await;
    let total = 300;
    for i in 0..total {
        q.dead(&format!("k{i:03}"), "push", "failed", 5).await;
    }
    // Ctrl-C as soon as it has moved one: it stops cleanly, nothing doubled.
    let mut child = replay(&q.settings, &[]).spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    tokio::time::timeout(WAIT, stdout.read_line(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(first.starts_with("moved job 'k"), "{first}");
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    let summary = rest.lines().last().unwrap_or(&first).to_owned();
    let moved_lines = 1 + rest.lines().filter(|l| l.starts_with("moved job")).count();
    let (jobs, dead) = q.settle(total).await;
    assert_eq!(jobs, moved_lines, "{summary}");
    assert_eq!(jobs + dead, total, "{summary}");
    if jobs < total {
        assert_eq!(status.code(), Some(130), "{summary}");
        assert!(summary.ends_with("; interrupted"), "{summary}");
    }

    // Killed outright: what it had not acked goes back; at most the one in hand doubles.
    let mut child = replay(&q.settings, &[]).spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(WAIT, stdout.read_line(&mut first))
        .await
        .unwrap()
        .unwrap();
    child.kill().await.unwrap();
    // The broker requeues the unacked once it sees the connection gone.
    q.settle(total).await;
    let jobs = q.take_jobs().await;
    let dead = q.take_dead().await;
    let mut all = ids(&jobs);
    all.extend(ids(&dead));
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), total, "nothing lost");
    assert!(
        all.len() <= total + 1,
        "at most the one in hand doubled: {}",
        all.len()
    );
}
