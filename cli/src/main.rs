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
    /// Run the node agent: register this machine and run the pods bound to it.
    Agent(Box<cmd::agent::AgentArgs>),
    /// Create or update the objects in manifests (server-side apply).
    Apply(cmd::apply::ApplyArgs),
    /// Measure coxswain's components (`cox bench store`).
    Bench(cmd::bench::BenchArgs),
    /// Bring up a one-machine cluster, submit the example training job and show the scheduler.
    Demo(cmd::demo::DemoArgs),
    /// Delete objects by kind and name, or those in manifests.
    Delete(cmd::delete::DeleteArgs),
    /// Show one object in full and the events about it.
    Describe(cmd::describe::DescribeArgs),
    /// List or show objects (table, yaml, json, name); `-w` follows changes.
    Get(cmd::get::GetArgs),
    /// Import images into this node's agent store (`cox image import PATH`, `cox image ls`).
    Image(cmd::image::ImageArgs),
    /// Print a container's log (`-f` follows it).
    Logs(cmd::logs::LogsArgs),
    /// Rewrite encrypted resources with the first key of --encryption-provider-config.
    Reencrypt(cmd::reencrypt::ReencryptArgs),
    /// Run the control plane: the Kubernetes-compatible API over the embedded store or etcd.
    Server(cmd::server::ServerArgs),
    /// Replay GPU-cluster traces through the placement simulator.
    Sim(cmd::sim::SimArgs),
    /// Create bootstrap tokens for joining nodes (`cox token create`).
    Token(cmd::token::TokenArgs),
    /// Show nodes, pods or the GPU map (`cox top gpus`), optionally redrawn (`-w`).
    Top(cmd::top::TopArgs),
    /// Print the version of this binary.
    Version,
}

fn main() -> std::process::ExitCode {
    // Started as `coxswain-shim` (the agent links it to this binary): be the container shim.
    let mut args = std::env::args();
    let program = args.next().unwrap_or_default();
    if std::path::Path::new(&program).file_name() == Some(cmd::agent::SHIM_NAME.as_ref()) {
        let args: Vec<String> = args.collect();
        std::process::exit(coxswain_node_agent::shim::main(&args));
    }
    let cli = Cli::parse();
    // The daemons (and the demo, which stops its cluster before it exits) outlive a closed
    // stdout; a command that prints and ends stops quietly.
    if !matches!(
        cli.command,
        Command::Agent(_) | Command::Demo(_) | Command::Server(_)
    ) {
        quiet_on_broken_pipe();
    }
    let result = match cli.command {
        Command::Agent(args) => cmd::agent::run(*args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Delete(args) => cmd::delete::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Describe(args) => cmd::describe::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Image(args) => cmd::image::run(args),
        Command::Logs(args) => cmd::logs::run(args),
        Command::Reencrypt(args) => cmd::reencrypt::run(args),
        Command::Server(args) => cmd::server::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Top(args) => cmd::top::run(args),
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

/// `cox get pods | head`: once the reader has gone, exit quietly with 141 (128 + SIGPIPE),
/// as a Unix tool killed by SIGPIPE does. Rust ignores SIGPIPE, so `println!` panics on
/// the closed pipe instead; this hook turns exactly that panic into the quiet exit.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
