#!/usr/bin/env bash
# A rollout's wall time over three clustered rmqtt nodes (rmqtt-cluster-broadcast) against one node, with the
# same simulated fleet (pass the number of phones; default 1000). Builds the controller, the broker node and the
# bench in release mode first. Needs protoc (Debian's protobuf-compiler) for the cluster plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-cluster" "${1:-1000}"
