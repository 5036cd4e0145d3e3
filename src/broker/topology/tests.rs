use super::*;
use crate::settings::{LaneSettings, Settings};

fn position(declarations: &[Declaration], described: &str) -> usize {
    declarations
        .iter()
        .position(|d| d.describe() == described)
        .unwrap_or_else(|| panic!("no {described} in {declarations:#?}"))
}

#[test]
fn a_deployment_before_lanes_moves_over_in_an_order_that_loses_and_doubles_nothing() {
    let topology = Topology::new(&Settings::default());
    let d = topology.declarations();
    let bulk = position(&d, "binding pushwoosh.jobs.bulk -> pushwoosh.jobs ()");
    let lanes = position(
        &d,
        "binding pushwoosh.jobs -> exchange pushwoosh.jobs.lanes (#)",
    );
    let old = position(&d, "no binding pushwoosh.jobs -> pushwoosh.jobs (#)");
    let urgent = position(
        &d,
        "binding pushwoosh.jobs.lanes -> pushwoosh.jobs.urgent (urgent.#)",
    );
    assert!(bulk < lanes && lanes < old && old < urgent, "{d:#?}");
    assert_eq!(
        topology.queues()[..3],
        [
            "pushwoosh.dead".to_owned(),
            "pushwoosh.jobs".to_owned(),
            "pushwoosh.jobs.urgent".to_owned()
        ]
    );
}

#[test]
fn each_lane_has_retry_queues_that_give_its_jobs_back_to_its_own_queue() {
    let topology = Topology::new(&Settings::default());
    let tier = topology.retry_tiers[0];
    let urgent_retry = topology.retry_queue(Some("urgent"), tier);
    assert_eq!(
        urgent_retry,
        format!("pushwoosh.retry.urgent.{}ms.held", tier.as_millis())
    );
    let back_to = |name: &str| {
        topology
            .retry_returns()
            .into_iter()
            .find(|r| r.queue == name)
            .map(|r| r.back_to)
            .unwrap()
    };
    assert_eq!(back_to(&urgent_retry), "pushwoosh.jobs.urgent");
    assert_eq!(back_to(&topology.retry_queue(None, tier)), "pushwoosh.jobs");
    // Held until due by the worker, no TTL; dead-lettered only by the broker's own
    // give-up (a delivery limit), into the lane's queue.
    for declaration in topology.declarations() {
        if let Declaration::Queue { name, arguments } = declaration
            && let Some(retry) = topology
                .retry_returns()
                .into_iter()
                .find(|r| r.queue == name)
        {
            let keys: Vec<&str> = arguments.inner().keys().map(|k| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "x-dead-letter-exchange",
                    "x-dead-letter-routing-key",
                    "x-queue-type"
                ],
                "{name}"
            );
            assert_eq!(
                arguments.inner().get("x-dead-letter-routing-key"),
                Some(&long_string(&retry.back_to))
            );
        }
    }
    assert_eq!(
        topology.retry_queues().len(),
        2 * topology.retry_tiers.len()
    );
}

#[test]
fn a_lane_turned_off_loses_its_binding_and_its_jobs_go_to_the_jobs_queue() {
    let mut settings = Settings::default();
    settings.lanes.get_mut("urgent").unwrap().enabled = false;
    settings.lanes.insert(
        "otp".into(),
        LaneSettings {
            queue: "codes".into(),
            ..LaneSettings::default()
        },
    );
    let topology = Topology::new(&settings);
    let described: Vec<String> = topology
        .declarations()
        .iter()
        .map(Declaration::describe)
        .collect();
    assert!(
        described.contains(
            &"no binding pushwoosh.jobs.lanes -> pushwoosh.jobs.urgent (urgent.#)".to_owned()
        ),
        "{described:#?}"
    );
    assert!(
        described.contains(&"binding pushwoosh.jobs.lanes -> codes (otp.#)".to_owned()),
        "{described:#?}"
    );
    assert!(!described.contains(&"queue pushwoosh.jobs.urgent".to_owned()));
}
