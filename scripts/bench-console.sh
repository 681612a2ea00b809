#!/usr/bin/env bash
# The console's speed benchmark (console/bench/bench.mjs) in headless Chromium: starts
# `mir local` on free ports with a fresh data dir, creates 1,000 devices through the API,
# then measures the fleet page with 1,000 devices and a chart of 10,000 points.
# MIR_BENCH_DEVICES, MIR_BENCH_POINTS, MIR_BENCH_RUNS change the sizes and runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"
hub=""
data=$(mktemp -d "${TMPDIR:-/tmp}/mir-console-bench.XXXXXX")
cleanup() {
  [ -n "$hub" ] && kill "$hub" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
[ -x /usr/bin/chromium ] || apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
(cd console && npm ci --no-audit --no-fund --loglevel=error)
cargo build -q -p mir-cli --bin mir
"$CARGO_TARGET_DIR/debug/mir" local --data-dir "$data" --http-port 0 --mqtt-port 0 --mqtts-port 0 \
  --log-level warn >"$data/hub.out" 2>"$data/hub.log" &
hub=$!
for _ in $(seq 1 120); do
  [ -s "$data/endpoints.json" ] && break
  kill -0 "$hub" 2>/dev/null || { cat "$data/hub.log" >&2; exit 1; }
  sleep 0.5
done
api=$(sed -n 's/.*"http": *"\([^"]*\)".*/\1/p' "$data/endpoints.json" | head -n 1)
[ -n "$api" ] || { echo "mir local wrote no http endpoint" >&2; exit 1; }
echo "hub: $api; chromium: $(/usr/bin/chromium --version 2>/dev/null || true)"
(cd console && MIR_CONSOLE_URL="$api" node bench/bench.mjs)
