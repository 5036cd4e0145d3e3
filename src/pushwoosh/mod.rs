//! Everything about talking to the Pushwoosh Messages API: building the request,
//! making the call, and classifying the answer.

pub mod classify;
pub mod client;
pub mod request;

pub use classify::{Verdict, classify};
pub use client::{HttpAnswer, PushwooshClient, TransportError};
