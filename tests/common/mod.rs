//! Test harness: a real RabbitMQ (found, never skipped), a wiremock Pushwoosh, and the
//! real worker built from settings with names of its own, so tests run side by side.
//! One file a concern; every helper is `common::X` to the tests.
#![allow(dead_code)]

mod app;
mod broker;
mod http;
mod jobs;
mod metrics;
mod process;
mod queues;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use app::*;
#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use jobs::*;
#[allow(unused_imports)]
pub use metrics::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use queues::*;
