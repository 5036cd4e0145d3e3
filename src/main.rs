use std::process::ExitCode;

use clap::Parser;
use pushwoosh_worker::cli::{Cli, main as run};

// jemalloc, for the worker binary (the library leaves the allocator to whoever links it:
// the tests use the system's, the bench chooses its own). A job is decoded into a few
// dozen small allocations and freed on another thread, which glibc's malloc mostly serves
// from its slow path: with jemalloc the worker runs ~15% fewer instructions a job (README
// "Performance").
//
// One arena instead of jemalloc's four per core: this worker allocates little per second
// next to what jemalloc's per-thread caches absorb, and the extra arenas only hold pages
// (peak RSS at 256 jobs in flight: ~20.5 MB instead of ~22 MB). `_RJEM_MALLOC_CONF` in
// the environment overrides it, as any other jemalloc option.
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
