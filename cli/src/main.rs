//! `cox`: one binary for the coxswain server, agent and command-line verbs.

mod cmd;

use clap::{Parser, Subcommand};

/// coxswain: a container orchestrator for GPU clusters that run ML training.
#[derive(Parser)]
#[command(name = "cox", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure coxswain's components (`cox bench store`).
    Bench(cmd::bench::BenchArgs),
    /// Replay GPU-cluster traces through the placement simulator.
    Sim(cmd::sim::SimArgs),
    /// Print the version of this binary.
    Version,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => cmd::bench::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Version => {
            println!("cox {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line a human can act on: the error and its causes, joined.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
