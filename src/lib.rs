//! pushwoosh-worker: consumes jobs from RabbitMQ, calls the Pushwoosh Messages API,
//! publishes one result event per job.

/// For the benchmark only (`bench/`): the few items it uses from the worker, listed in
/// one place so that nothing else has to be public for it.
pub mod bench_support;
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
