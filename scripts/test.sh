#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace.
# This is the README's test command and what CI (.ci/run) runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# A one-shot build gains nothing from incremental state, which would double
# the target directory's size on disk.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked --no-fail-fast

echo "== disk used by target/: $(du -sh target | cut -f1)"
