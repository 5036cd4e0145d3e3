//! The worker proper: consuming the jobs queue and processing each delivery.

pub mod acks;
mod admit;
pub mod batcher;
pub mod breaker;
mod call;
pub mod consumer;
pub mod context;
mod deadline;
mod fate;
pub mod lane;
mod once;
mod outage;
mod park;
mod probe;
pub mod process;
mod received;
mod returns;
mod session;
mod settle;
mod verdict;

pub use breaker::{BreakerState, CircuitBreaker};
pub use consumer::run_consumer;
pub use context::{Readiness, WorkerContext};
