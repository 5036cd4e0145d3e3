//! The ledger against the real Redis: claims, records and releases of job ids, the
//! account-wide rate limiter, Redis going away and coming back, and what a remembered
//! job costs; the same on a Cluster and behind Sentinel. Needs Redis (`REDIS_URL`, else 127.0.0.1:6379: `scripts/ensure-redis`)
//! and the `redis-server` and `redis-cli` binaries (for the tests that run Redis servers of
//! their own).

// The Send check of a spawned limiter call walks deep future types (the redis crate's).
#![recursion_limit = "256"]

#[path = "ledger/claims.rs"]
mod claims;
#[path = "ledger/limiter.rs"]
mod limiter;
#[path = "ledger/memory.rs"]
mod memory;
#[path = "ledger/outage.rs"]
mod outage;
#[path = "ledger/support.rs"]
mod support;
#[path = "ledger/topologies.rs"]
mod topologies;
