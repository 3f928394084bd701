//! `dts-operator`: thin entry point. Flags are parsed here; everything else
//! lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc instead of the system allocator: the watch cache is thousands
/// of small, long-lived objects replaced one by one as their status
/// changes, and glibc's malloc keeps the holes this leaves (and an arena per
/// thread). With 10,000 DtsJobs jemalloc as configured below held 13 MiB
/// less RSS than glibc after creation, 15 MiB less after stopping them all,
/// and 14 MiB less when started with them (the bench's `memory` scenario,
/// docs/benchmarks.md). The cache's entries get an arena of their own
/// (`dts_operator::alloc`).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: dts_operator::alloc::Allocator = dts_operator::alloc::Allocator;

/// jemalloc's options, read at its start: a background thread returns
/// freed pages to the system within about a second (instead of on later
/// allocations), and two arenas suit an operator whose few threads
/// allocate little at a time. (`_rjem_` is the symbol prefix of
/// tikv-jemalloc-sys; `_RJEM_MALLOC_CONF` in the environment still applies on top.)
#[cfg(not(feature = "system-allocator"))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8; 70] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:2\0";

#[derive(Parser)]
#[command(
    name = "dts-operator",
    version,
    about = "Stops Alibaba Cloud DTS jobs declared as DtsJob resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (KUBECONFIG or in-cluster configuration).
    Run(Box<dts_operator::cli::RunArgs>),
    /// Print the DtsJob CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", dts_operator::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            dts_operator::telemetry::init(&args.log_level, args.log_format);
            if let Err(e) = dts_operator::alloc::init() {
                // Only the memory a burst leaves behind is at stake.
                tracing::warn!(error = %e, "no arena of its own for the watch cache");
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("dts-operator: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(dts_operator::run::run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "dts-operator failed");
                    eprintln!("dts-operator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
