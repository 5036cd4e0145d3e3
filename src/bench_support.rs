//! What the benchmark (`bench/`, a crate of its own) uses from the worker, in one place.
//! It is for the benchmark only: the worker does not use these paths, and a change here
//! is a change to the bench.
//!
//! The bench drives the real worker binary; from the library it takes only what it must
//! agree with the worker on (the topology its producer and collector declare, the
//! settings it starts the worker with), the ack path its no-HTTP ceiling loop shares with
//! the worker so that the two are compared with the same ack traffic, and the sandbox it
//! can use as the mock Pushwoosh.

pub use crate::broker::{Topology, watch_results};
pub use crate::metrics::Metrics;
pub use crate::retry::RetryPolicy;
pub use crate::sandbox::{SandboxConfig, SandboxHandle, start as start_sandbox};
pub use crate::settings::{QueueType, Settings};
pub use crate::worker::acks::{Acks, Settlement};
