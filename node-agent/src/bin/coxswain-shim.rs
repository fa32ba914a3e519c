//! `coxswain-shim`: the per-container shim process (see `coxswain_node_agent::shim`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(coxswain_node_agent::shim::main(&args));
}
