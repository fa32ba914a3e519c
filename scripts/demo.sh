#!/usr/bin/env bash
# The main job: installs what is needed, builds cox, and runs `cox demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p coxswain-cli -p coxswain-nvidia-plugin -p coxswain-csi
exec target/release/cox demo "$@"
