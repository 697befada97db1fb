#!/usr/bin/env bash
# Fleet-scale performance against its floors and targets, from one run: a rollout to simulated phones through
# the embedded broker and Mosquitto beside the raw MQTT floor of the same traffic, the controller's durable
# ingest of final reports, a reconnect storm beside its floor, a controller holding a million devices, and the
# agent's download and verify beside `curl | sha256sum`. Arguments go to the bench
# (`bench/fleet.sh --devices 10000 --brokers embedded`; `bench/fleet.sh --help`). See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build, so that the controller library is built once with the features both binaries use.
cargo build --release -p bindwave-controller --bin bindwave -p bindwave-tests --bin bench-fleet --bin bench-agent
cargo build --profile release-agent -p bindwave-agent
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-fleet" --agent "$target/release-agent/bindwave-agent" "$@"
