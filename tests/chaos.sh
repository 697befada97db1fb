#!/usr/bin/env bash
# The chaos suite at the sizes RELIABILITY.md reports: 1,000 phones per scenario, 20 SIGKILLs of the controller,
# Mosquitto restarts, real agents killed, a misbehaving download server, clock jumps; one scenario at a time,
# release builds. Prints each scenario's report line; any check that does not hold fails the run.
# (`cargo test --workspace` runs the same scenarios at a bounded size.)
#   tests/chaos.sh                  # every scenario
#   tests/chaos.sh clock            # the scenarios whose name holds "clock"
# Needs mosquitto and faketime (`apt-get install -y mosquitto faketime`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
log=$(mktemp)
set +e
BINDWAVE_CHAOS=full cargo test --release -p bindwave-tests --test chaos -- --test-threads 1 --nocapture "$@" >"$log" 2>&1
status=$?
set -e
grep -E '^chaos:|^test |panicked|test result' "$log" || true
if [ "$status" -ne 0 ]; then
  echo "the chaos suite failed; its whole output: $log" >&2
  exit "$status"
fi
rm -f "$log"
