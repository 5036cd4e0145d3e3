use std::process::ExitCode;

use clap::Parser;
use pushwoosh_worker::cli::{Cli, main as run};

// jemalloc, for the worker binary (the library leaves the allocator to whoever links it:
// the tests use the system's, the bench chooses its own). A job is decoded into many small
// allocations that are freed on another thread, which glibc's malloc mostly serves from
// its slow path and jemalloc's per-thread caches serve from their fast one (docs/design.md
// "Allocator"; the figures are in docs/performance.md).
//
// One arena instead of jemalloc's four per core: this worker allocates little per second
// next to what the per-thread caches absorb, so more arenas would only hold more pages.
// `_RJEM_MALLOC_CONF` in the environment overrides it, as any other jemalloc option.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `malloc_conf`, a C string read once at start-up.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
#[used]
static MALLOC_CONF: &u8 = &b"narenas:1\0"[0];

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pushwoosh-worker: {error:#}");
            ExitCode::FAILURE
        }
    }
}
