//! `dts-operator`: thin entry point. Flags are parsed here; everything else
//! lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
