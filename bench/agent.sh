#!/usr/bin/env bash
# The agent's footprint against its targets: binary size, idle RSS, bytes read for a rejected bind, peak RSS
# for a 1 GiB bind (pass a size in GiB to change it). Builds the stripped agent and the bench first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile release-agent -p bindwave-agent
cargo build --release -p bindwave-controller --bin bindwave
cargo build --release -p bindwave-tests --bin bench-agent
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-agent" "$target/release-agent/bindwave-agent" "${1:-1}"
