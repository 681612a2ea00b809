#!/usr/bin/env bash
# The event feed's latency: from `EventStore::append` in an in-process hub (the hub's
# decorated store) to the line `mir evt watch` prints, over 100 events one after
# another, MIR_BENCH_RUNS times (default 3). Prints p50/p99/max of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"
runs="${MIR_BENCH_RUNS:-3}"
for _ in $(seq "$runs"); do
  cargo test -q -j 1 -p mir-cli --test e2e -- --ignored --nocapture \
    watch::evt_watch_latency_from_append_to_printed_line 2>&1 | grep 'evt watch latency'
done
