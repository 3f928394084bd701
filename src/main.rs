//! `dts-operator`: thin entry point. Flags are parsed here; everything else
//! lives in the library.

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
    /// Print the DtsJob CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", dts_operator::crd::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
    }
}
