//! Everything about talking to the Pushwoosh Messages API: building the request,
//! making the call within the rate limits, and classifying the answer.

pub mod classify;
pub mod client;
pub mod limiter;
pub mod request;

pub use classify::{Verdict, classify};
pub use client::{HttpAnswer, PushwooshClient, TransportError};
pub use limiter::{Priority, RateLimiter};
