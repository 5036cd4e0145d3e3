//! What a run is asked to do ([`RunSpec`]: its consumer, its load, its size) and what
//! it measured ([`Measured`]).

use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Consumer {
    /// The worker binary with this environment (on top of names, mock and prefetch).
    Worker(Vec<(String, String)>),
    /// The no-HTTP loop; it holds each job this long before publishing its result (a
    /// sleep standing for the API call), zero for none.
    Ceiling(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Publish every job as fast as confirms allow while the consumer runs.
    Concurrent,
    /// Fill the queue, then start the consumer.
    Drain,
    /// Publish at a steady rate while the consumer runs.
    Paced(u32),
    /// Publish at a steady rate; count the results of a window of this many seconds.
    Window(u32, u64),
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub label: String,
    pub consumer: Consumer,
    pub load: Load,
    pub jobs: usize,
    pub prefetch: u16,
    pub api_latency: Duration,
    /// The mock's createMessage limit a minute.
    pub api_limit: Option<u32>,
    /// Leading jobs left out of the latency percentiles.
    pub warmup: usize,
    /// Sample the worker's jobs_in_flight gauge during the run.
    pub sample_in_flight: bool,
    /// Needs the sandbox (its rate limit), whatever `--mock` says.
    pub use_sandbox: bool,
    /// Consumer processes on the one jobs queue (competing consumers); 0 counts as 1.
    pub processes: usize,
    /// SIGKILL the last of the processes this long after the start.
    pub kill_at: Option<Duration>,
    /// Sample the mock's createMessage requests during the run (`Measured::calls_timeline`).
    pub calls_timeline: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub label: String,
    pub is_worker: bool,
    pub processes: usize,
    pub expected: usize,
    pub results: usize,
    pub not_ok: usize,
    pub duplicates: usize,
    /// Results the ledger answered from an earlier processing's record (`"duplicate": true`).
    pub marked_duplicate: usize,
    pub seconds: f64,
    pub jobs_per_s: f64,
    /// Publish-to-result percentiles, ms (not for a drain: jobs waited in the queue).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The slowest 1% of jobs (publish to result): how many, and the mean of each leg, ms
    /// (to the worker, in it, back).
    pub tail_legs: Option<(usize, f64, f64, f64)>,
    pub publish_per_s: Option<f64>,
    pub peak_rss_kb: Option<u64>,
    pub idle_rss_kb: Option<u64>,
    pub cpu_ms: Option<f64>,
    pub api_calls: u64,
    /// Messages the sandbox created (a repeated transactionId creates none).
    pub sends: Option<u64>,
    /// (seconds after the start, createMessage requests since it), every 250 ms.
    pub calls_timeline: Vec<(f64, u64)>,
    /// When a process was killed, seconds after the start.
    pub killed_at: Option<f64>,
    pub http_429: Option<u64>,
    /// `basic.ack` commands the worker sent (single and multiple).
    pub acks: Option<u64>,
    /// The worker's mean API call duration (its own histogram), ms.
    pub call_ms: Option<f64>,
    /// A holding ceiling's mean hold (from its log), ms.
    pub hold_ms: Option<f64>,
    /// The worker's mean time from delivery to settlement, and from a result's publish to
    /// its confirm, ms.
    pub job_ms: Option<f64>,
    pub confirm_ms: Option<f64>,
    pub max_in_flight: Option<u64>,
    pub machine_busy: Option<f64>,
    pub broker_cpu_ms: Option<f64>,
    pub redis_cpu_ms: Option<f64>,
    pub bench_cpu_ms: Option<f64>,
    pub mock_cpu_ms: Option<f64>,
    pub log_bytes: Option<u64>,
    pub stopped_short: Option<String>,
}

impl Measured {
    pub fn cpu_ms_per_job(&self) -> Option<f64> {
        Some(self.cpu_ms? / self.results.max(1) as f64)
    }
}
