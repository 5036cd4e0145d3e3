//! The worker proper: consuming the jobs queue and processing each delivery.

pub mod acks;
pub mod batcher;
pub mod breaker;
pub mod consumer;
pub mod context;
mod outage;
pub mod process;

pub use breaker::{BreakerState, CircuitBreaker};
pub use consumer::run_consumer;
pub use context::{Readiness, WorkerContext};
