//! `dts-emulator --listen 127.0.0.1:PORT --config FILE [--secret-ledger FILE]`:
//! a local DTS API.
//!
//! The first line on stdout is `listening on ADDR` (with the real port when
//! PORT is 0), so scripts can start it on a free port and read where it is.
//! A bad config file is one line on stderr and exit status 2.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dts_emulator::{self as emulator, Config};

/// A local Alibaba Cloud DTS (2020-01-01) API for tests, demos and offline
/// rehearsals. Admin API under /_emulator/ (journal, faults, jobs).
#[derive(Parser, Debug)]
#[command(name = "dts-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Accounts and jobs, YAML or JSON.
    #[arg(long)]
    config: PathBuf,
    /// Append every secret seen or issued (account secrets, signatures,
    /// security and OIDC tokens, STS credentials) to this file, one
    /// `label<TAB>value` a line, for a test run's secret scan. Nothing else
    /// ever prints them.
    #[arg(long, value_name = "FILE")]
    secret_ledger: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dts-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let ledger = match args.secret_ledger.as_deref().map(emulator::Ledger::open).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dts-emulator: cannot open the secret ledger: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dts-emulator: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let handle = match emulator::serve_with_ledger(listener, config, ledger).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("dts-emulator: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}", handle.local_addr());
    let _ = out.flush();
    drop(out);

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dts-emulator: cannot install the SIGTERM handler: {e}");
            return ExitCode::from(1);
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    match handle.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dts-emulator: {e}");
            ExitCode::from(1)
        }
    }
}
