//! The worker on a three-node RabbitMQ cluster (scripts/rabbitmq-cluster: Debian's
//! rabbitmq-server on 127.0.0.1:5691-5693, beside the machine's own broker): 2,000 SMS
//! jobs at 50 ms API latency, and in the middle of them a node killed with SIGKILL: the
//! one the worker is connected to; the one leading the jobs queue; the one leading the
//! retry queues while they hold parked retries (every job's first call fails), the jobs
//! queue led by another node; the one leading both. No job lost, none sent twice (the
//! ledger), every job a result, the worker consuming on a live node. Each test starts a
//! fresh cluster and stops it; they take turns.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{TestApp, http_get, ok_answer, test_settings};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

const JOBS: usize = 2_000;
/// Results read before the node is killed.
const KILL_AT: usize = 500;
const WAIT: Duration = Duration::from_secs(60);

/// One cluster on the machine: the tests take turns.
static CLUSTER: Mutex<()> = Mutex::const_new(());

fn cluster(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq-cluster");
    let status = Command::new(script)
        .args(args)
        .status()
        .expect("scripts/rabbitmq-cluster runs");
    assert!(status.success(), "scripts/rabbitmq-cluster {args:?} failed");
}

/// Node 1, 2 or 3 of the cluster.
fn url(node: usize) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", 5690 + node)
}

fn sms(i: usize) -> Value {
    json!({"id": format!("c-{i}"), "kind": "sms", "application": "A-B",
           "notifications": [{"send_date": "now", "content": format!("code for c-{i}\u{0}"),
                              "devices": ["+1234567890"]}]})
}

/// Pushwoosh at 50 ms; with `fail_first`, every job's first call is answered 500 (so
/// every job is parked once in a retry queue), the next ones succeed.
struct FirstCallFails {
    fail_first: bool,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl wiremock::Respond for FirstCallFails {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let id = job_of(&String::from_utf8_lossy(&request.body));
        let first = self.seen.lock().unwrap().insert(id);
        let answer = if self.fail_first && first {
            wiremock::ResponseTemplate::new(500)
        } else {
            ok_answer(json!({"Messages": ["SMS-CODE"]}))
        };
        answer.set_delay(Duration::from_millis(50))
    }
}

/// The job id a request's content carries.
fn job_of(body: &str) -> String {
    body.find("code for ")
        .map(|start| {
            body[start + 9..]
                .split('\\')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

#[derive(Clone, Copy, Debug)]
enum Lost {
    /// The node the worker is connected to (it does not lead the jobs queue).
    Connected,
    /// The node leading the jobs queue (the worker is connected to another).
    JobsLeader,
    /// The node leading the retry queues, which hold parked retries (every job's first
    /// call fails); the jobs queue is led by another node, and the worker is on a third.
    RetryLeader,
    /// The node leading both the jobs queue and the retry queues, which hold parked
    /// retries; the worker is on another. (With retry queues that dead-lettered expired
    /// jobs, RabbitMQ 3.10.8's dead-letter worker held them for minutes in this case.)
    BothLeaders,
}

impl Lost {
    /// Every job's first call fails, so that every job is parked once.
    fn parks(self) -> bool {
        matches!(self, Lost::RetryLeader | Lost::BothLeaders)
    }
}

/// Every queue as node 3 lists it, with these columns. Asked without blocking: the
/// worker and the mock run on the test's own thread.
async fn queues_on_node_3(columns: &[&str]) -> Vec<Value> {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["-n", "pw-c3@localhost", "-q", "list_queues"])
        .args(columns)
        .args(["--formatter", "json"])
        .output()
        .await
        .expect("rabbitmqctl runs");
    serde_json::from_slice(&out.stdout).expect("rabbitmqctl's JSON")
}

/// The node leading a quorum queue and the nodes holding it.
async fn placement(queue: &str) -> (String, Vec<String>) {
    let queues = queues_on_node_3(&["name", "leader", "members"]).await;
    let q = queues.iter().find(|q| q["name"] == queue);
    let leader = q.and_then(|q| q["leader"].as_str()).unwrap_or_default();
    let mut members: Vec<String> = q
        .and_then(|q| q["members"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    members.sort();
    (leader.to_owned(), members)
}

/// The messages these queues hold, ready or held by a consumer (parked retries are held
/// by the worker until due).
async fn held(queues: &[String]) -> u32 {
    queues_on_node_3(&["name", "messages"])
        .await
        .iter()
        .filter(|q| queues.iter().any(|name| q["name"] == name.as_str()))
        .filter_map(|q| q["messages"].as_u64())
        .sum::<u64>() as u32
}

struct Outcome {
    results: BTreeMap<String, Vec<Value>>,
    sent: HashMap<String, usize>,
    /// /readyz after the run.
    readyz: (u16, String),
    /// What /readyz said while the node was gone, in order, without repeats.
    said: Vec<(u16, String)>,
    /// From the kill to the first 200 that followed a 503 (`None`: never unready).
    back_after: Option<Duration>,
    /// Jobs parked in the retry queues at the kill.
    parked: u32,
}

async fn through_a_node_kill(lost: Lost) -> Outcome {
    let _turn = CLUSTER.lock().await;
    // The worker's own account of the failover, shown when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("pushwoosh_worker=info,lapin=warn")
        .try_init();
    cluster(&["stop"]);
    cluster(&["start"]);
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(FirstCallFails {
            fail_first: lost.parks(),
            seen: Default::default(),
        })
        .mount(&mock)
        .await;
    let mut settings = test_settings(&mock.uri()).await;
    // The test publishes and watches results through node 3, which is never killed;
    // the worker knows all three and reaches node 1 first.
    settings.amqp.url = url(3);
    settings.amqp.urls = vec![url(1), url(2), url(3)];
    settings.amqp.prefetch = 16;
    // A call the mock answers late on a machine busy with a node's loss must not count
    // as one that may have gone out.
    settings.pushwoosh.timeout_ms = 15_000;
    // Retries parked long enough that many are in the retry queues when the node goes.
    settings.retry.initial_delay_ms = 500;
    settings.retry.max_delay_ms = 500;
    // Every first call failing is not Pushwoosh down here: the breaker stays out of it.
    settings.breaker.enabled = false;
    // The nodes leading the jobs queue and the retry queues, and the node killed.
    let (jobs_leader, retry_leader, killed) = match lost {
        Lost::Connected => (3, 3, 1),
        Lost::JobsLeader => (2, 2, 2),
        Lost::RetryLeader => (3, 2, 2),
        Lost::BothLeaders => (2, 2, 2),
    };
    // Quorum queues are led by the node they were declared through.
    common::declare_topology_on(&url(retry_leader), &settings).await;
    if jobs_leader != retry_leader {
        // Declared again through the other node, the jobs queues are led there.
        let retry = common::retry_queues(&settings);
        let conn = lapin::Connection::connect(&url(retry_leader), Default::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        for queue in pushwoosh_worker::broker::Topology::new(&settings).queues() {
            if !retry.contains(&queue) && queue != settings.amqp.dead_letter_queue {
                channel
                    .queue_delete(queue.as_str().into(), Default::default())
                    .await
                    .unwrap();
            }
        }
        let _ = conn.close(200, "deleted".into()).await;
        common::declare_topology_on(&url(jobs_leader), &settings).await;
    }
    // Spread over the three nodes, each led where it was declared.
    let members = ["pw-c1@localhost", "pw-c2@localhost", "pw-c3@localhost"];
    for (queue, leader) in [
        (settings.amqp.jobs_queue.clone(), jobs_leader),
        (common::retry_queues(&settings)[0].clone(), retry_leader),
    ] {
        let (leading, holding) = placement(&queue).await;
        assert_eq!(leading, format!("pw-c{leader}@localhost"), "{queue}");
        assert_eq!(holding, members, "{queue}");
    }
    let mut app = TestApp::start(mock, settings).await;
    assert!(
        http_get(app.http_addr, "/readyz").await.1.contains(":5691"),
        "the worker is on node 1"
    );
    for i in 0..JOBS {
        app.publish_job(&sms(i)).await;
    }
    let mut results: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let said = Arc::new(std::sync::Mutex::new(Vec::<(u16, String)>::new()));
    let mut watching = None;
    let mut killed_at = None;
    // Jobs in the retry queues when the node went.
    let mut parked = 0;
    let back = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let mut read = 0;
    while results.len() < JOBS {
        let r = app.next_result(WAIT).await.body;
        read += 1;
        results
            .entry(r["job_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(r);
        if read == KILL_AT {
            parked = held(&common::retry_queues(&app.settings)).await;
            // Off the test's thread, which the worker and the mock share.
            let node = format!("c{killed}");
            tokio::task::spawn_blocking(move || cluster(&["kill", &node]))
                .await
                .unwrap();
            killed_at = Some(std::time::Instant::now());
            let (addr, said, back) = (app.http_addr, said.clone(), back.clone());
            watching = Some(tokio::spawn(async move {
                loop {
                    let now = http_get(addr, "/readyz").await;
                    {
                        let mut said = said.lock().unwrap();
                        if now.0 == 200 && said.iter().any(|(code, _)| *code != 200) {
                            back.lock()
                                .unwrap()
                                .get_or_insert_with(std::time::Instant::now);
                        }
                        if said.last() != Some(&now) {
                            said.push(now);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
    }
    // Copies redelivered after the kill may still be answered.
    app.assert_no_result(Duration::from_secs(2)).await;
    if let Some(w) = watching {
        w.abort();
    }
    // Calls per job: with a first call that fails, the second is the one that went out.
    let mut sent = HashMap::new();
    for request in app.mock.received_requests().await.unwrap_or_default() {
        *sent
            .entry(job_of(&String::from_utf8_lossy(&request.body)))
            .or_insert(0) += 1;
    }
    if lost.parks() {
        for calls in sent.values_mut() {
            *calls -= 1;
        }
    }
    let readyz = http_get(app.http_addr, "/readyz").await;
    let said = said.lock().unwrap().clone();
    let back_after = killed_at.zip(*back.lock().unwrap()).map(|(k, b)| b - k);
    app.stop().await;
    cluster(&["stop"]);
    Outcome {
        results,
        sent,
        readyz,
        said,
        back_after,
        parked,
    }
}

fn no_job_lost_or_sent_twice(outcome: &Outcome) {
    assert_eq!(outcome.results.len(), JOBS, "every job has a result");
    for i in 0..JOBS {
        let id = format!("c-{i}");
        let copies = &outcome.results[&id];
        assert!(
            copies.iter().all(|r| r["outcome"] == "ok"),
            "{id}: {copies:?}"
        );
        // A copy redelivered after its answer was recorded repeats it, marked so.
        let first_hand = copies.iter().filter(|r| r["duplicate"] != true).count();
        assert!(first_hand <= 1, "{id}: {copies:?}");
        assert_eq!(outcome.sent.get(&id), Some(&1), "{id} was sent once");
    }
    assert_eq!(outcome.sent.len(), JOBS);
}

#[tokio::test]
async fn the_node_the_worker_is_connected_to_is_killed_and_it_goes_on_through_another() {
    let outcome = through_a_node_kill(Lost::Connected).await;
    no_job_lost_or_sent_twice(&outcome);
    // It said it was not ready while it had no node, and is ready on a live one.
    assert_eq!(outcome.readyz.0, 200, "{:?}", outcome.readyz);
    assert!(
        outcome.readyz.1.contains(":5692") || outcome.readyz.1.contains(":5693"),
        "{:?}",
        outcome.readyz
    );
    assert!(
        !outcome.readyz.1.contains("guest:guest"),
        "no password: {:?}",
        outcome.readyz
    );
    let back = outcome
        .back_after
        .expect("it said it was not ready meanwhile");
    eprintln!(
        "/readyz after the kill: {:?}; consuming again {} ms after it",
        outcome.said,
        back.as_millis()
    );
}

/// A node other than the worker's was lost: no job lost or sent twice, and the worker
/// is ready on node 1 still.
fn lost_elsewhere_and_still_on_node_1(outcome: &Outcome) {
    no_job_lost_or_sent_twice(outcome);
    assert_eq!(outcome.readyz.0, 200, "{:?}", outcome.readyz);
    assert!(outcome.readyz.1.contains(":5691"), "{:?}", outcome.readyz);
}

#[tokio::test]
async fn the_node_leading_the_jobs_queue_is_killed_and_the_queue_goes_on_on_the_others() {
    let outcome = through_a_node_kill(Lost::JobsLeader).await;
    lost_elsewhere_and_still_on_node_1(&outcome);
    eprintln!(
        "/readyz after the kill: {:?} (back after {:?})",
        outcome.said, outcome.back_after
    );
}

#[tokio::test]
async fn the_node_leading_the_retry_queues_is_killed_and_every_parked_retry_comes_back() {
    let outcome = through_a_node_kill(Lost::RetryLeader).await;
    lost_elsewhere_and_still_on_node_1(&outcome);
    // Every job is parked once; the retry queues held some when their leader went.
    assert!(outcome.parked > 0, "no retry was parked when the node went");
    eprintln!("{} retries parked at the kill", outcome.parked);
}

#[tokio::test]
async fn the_node_leading_the_jobs_queue_and_the_retry_queues_is_killed_and_every_parked_retry_comes_back()
 {
    let outcome = through_a_node_kill(Lost::BothLeaders).await;
    lost_elsewhere_and_still_on_node_1(&outcome);
    assert!(outcome.parked > 0, "no retry was parked when the node went");
    eprintln!(
        "{} retries parked at the kill; /readyz after it: {:?}",
        outcome.parked, outcome.said
    );
}
