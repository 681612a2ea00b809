#!/usr/bin/env bash
# The console's speed benchmark (console/bench/bench.mjs) in headless Chromium: starts
# `mir local` on free ports with a fresh data dir and a `mir swarm` of 1,000 devices
# (online, sending heartbeats and telemetry every 30 s), then measures the fleet page
# with those devices and a chart of 10,000 points.
# MIR_BENCH_DEVICES, MIR_BENCH_POINTS, MIR_BENCH_RUNS change the sizes and runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"
hub=""
data=$(mktemp -d "${TMPDIR:-/tmp}/mir-console-bench.XXXXXX")
swarm=""
cleanup() {
  [ -n "$swarm" ] && kill "$swarm" 2>/dev/null || true
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
. scripts/lib/local-hub.sh
api=$(hub_endpoint "$data" http)
[ -n "$api" ] || { echo "mir local wrote no http endpoint" >&2; exit 1; }
mqtt=$(hub_endpoint "$data" mqtt)
devices="${MIR_BENCH_DEVICES:-1000}"
cat >"$data/swarm.yaml" <<YAML
apiVersion: mir/v1alpha
kind: swarm
meta: {name: bench, namespace: bench, labels: {}, annotations: {}}
swarm:
  logLevel: warn
  deployBatchSize: 50
  devices:
    - count: $devices
      meta: {name: sensor, namespace: bench, labels: {site: bench}}
      telemetry:
        - name: Environment
          interval: 30s
          fields: [temperature]
  fields:
    - name: temperature
      type: float64
      generator:
        expr: "22 + 3*sin(t/120)"
YAML
MIR_API="$api" "$CARGO_TARGET_DIR/debug/mir" swarm -f "$data/swarm.yaml" --target "$mqtt" --duration 15m \
  >"$data/swarm.log" 2>&1 &
swarm=$!
echo "hub: $api; swarm of $devices devices; chromium: $(/usr/bin/chromium --version 2>/dev/null || true)"
(cd console && MIR_CONSOLE_URL="$api" MIR_BENCH_SWARM=1 node bench/bench.mjs)
