//! pushwoosh-worker: consumes jobs from RabbitMQ, calls the Pushwoosh Messages API,
//! publishes one result event per job.

mod allocator;
pub mod broker;
pub mod cli;
pub mod commands;
pub mod http;
pub mod job;
pub mod ledger;
pub mod metrics;
pub mod pushwoosh;
pub mod result_event;
pub mod retry;
pub mod sandbox;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod trace_context;
pub mod validate;
pub mod worker;
