#!/usr/bin/env bash
# Runs every fuzz target (or those named) with its committed seeds, under AddressSanitizer, with a memory limit
# that turns an unbounded allocation into a failure. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz --locked`).
#   fuzz/run.sh                      # 10,000,000 executions of each target (the figures in RELIABILITY.md)
#   FUZZ_SECONDS=10 fuzz/run.sh      # a time-boxed smoke of each (what CI runs)
#   fuzz/run.sh messages version     # only these
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(bind_header verifier version messages agent_config controller_config)
if [ -n "${FUZZ_SECONDS:-}" ]; then
  budget=(-max_total_time="$FUZZ_SECONDS")
else
  budget=(-runs="${FUZZ_RUNS:-10000000}")
fi
cargo +nightly fuzz build -O >/dev/null
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t"
  # -malloc_limit_mb: any single allocation over 64 MiB is a failure; -rss_limit_mb: the whole process.
  log="fuzz/artifacts/$t.log"
  mkdir -p fuzz/artifacts
  set +e
  cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- "${budget[@]}" \
    -malloc_limit_mb=64 -rss_limit_mb=512 -max_len=70000 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ?ERROR|SUMMARY|thread .* panicked)' "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $t failed (exit $status): $log, and the input in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
