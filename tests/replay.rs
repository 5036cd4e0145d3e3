//! `pushwoosh-worker replay`, run as an operator would: what moves, what stays, and that
//! nothing is lost or duplicated on the way.

mod common;

#[path = "replay/conservation.rs"]
mod conservation;
#[path = "replay/filters.rs"]
mod filters;
#[path = "replay/support.rs"]
mod support;
#[path = "replay/worker.rs"]
mod worker;
