//! The lanes a worker consumes: the jobs queue (`bulk`) and each lane that is on
//! (`urgent`, …), each with its own channel, prefetch and metrics label.

use crate::broker::Topology;
use crate::settings::Settings;

#[derive(Debug, Clone)]
pub struct Lane {
    /// `None`: the jobs queue.
    name: Option<String>,
    pub queue: String,
    pub prefetch: u16,
    /// `bulk` or the lane's name: the metrics' `lane` label (made once per process).
    label: &'static str,
}

impl Lane {
    /// The jobs queue, then every lane that is on. Lanes with the most urgent work first,
    /// so that a half-open breaker probes with those.
    pub fn all(settings: &Settings, topology: &Topology) -> Vec<Lane> {
        let mut out: Vec<Lane> = topology
            .lanes
            .iter()
            .map(|lane| Lane {
                name: Some(lane.name.clone()),
                queue: lane.queue.clone(),
                prefetch: settings.lanes.get(&lane.name).map_or(16, |l| l.prefetch),
                label: Box::leak(lane.name.clone().into_boxed_str()),
            })
            .collect();
        out.push(Lane::bulk(settings));
        out
    }

    pub fn bulk(settings: &Settings) -> Lane {
        Lane {
            name: None,
            queue: settings.amqp.jobs_queue.clone(),
            prefetch: settings.amqp.prefetch,
            label: "bulk",
        }
    }

    /// The lane's name, `None` for the jobs queue.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn label(&self) -> &'static str {
        self.label
    }

    /// A lane of its own: first in line at the rate limiter, never waiting for a batch.
    pub fn is_urgent(&self) -> bool {
        self.name.is_some()
    }
}
