//! The urgent lane and deadlines against the real broker: routing by the first word of
//! the routing key (and the move from a deployment made before lanes), an urgent job
//! ahead of a bulk backlog, and `expires_at` / `retry.max_elapsed_ms` holding whatever
//! keeps a job waiting.

mod common;

#[path = "lanes/deadlines.rs"]
mod deadlines;
#[path = "lanes/routing.rs"]
mod routing;
#[path = "lanes/support.rs"]
mod support;
#[path = "lanes/urgent.rs"]
mod urgent;
