#!/usr/bin/env bash
# The main job: builds the `mir` CLI and the weather example device, starts the local
# hub (`mir local`) and the simulated device, then runs the commands a newcomer types
# next. Leaves both running until Ctrl-C (or exits after the tour with --once).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"
once=0; [ "${1:-}" = "--once" ] && once=1

echo "building mir and the weather device (first build takes a few minutes)..."
cargo build -q -p mir-cli --bin mir
cargo build -q -p mir-device-sdk --example weather
bin="$CARGO_TARGET_DIR/debug"
export PATH="$bin:$PATH"

data="${MIR_DATA_DIR:-$PWD/.mir-demo}"
mkdir -p "$data"; rm -f "$data/endpoints.json"
http_port="${MIR_DEMO_HTTP_PORT:-8180}"
mir local --data-dir "$data" --http-port "$http_port" --mqtt-port "${MIR_DEMO_MQTT_PORT:-1883}" \
  --mqtts-port "${MIR_DEMO_MQTTS_PORT:-8883}" --log-level warn > "$data/hub.out" 2> "$data/hub.log" &
hub=$!
trap 'kill $hub $device 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$data/endpoints.json" ] && break; sleep 0.1; done
[ -s "$data/endpoints.json" ] || { echo "mir local did not start:"; cat "$data/hub.log"; exit 1; }
api=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['http'])" "$data/endpoints.json")
mqtt=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['mqtt'])" "$data/endpoints.json")
export MIR_API="$api"

RUST_LOG=warn "$bin/examples/weather" "$mqtt" weather > "$data/device.log" 2>&1 &
device=$!
sleep 4

run() { printf '\n$ %s\n' "$*"; "$@" || true; }
run mir device ls
run mir device ls weather/default -o yaml
run mir cmd send weather
run mir cmd send weather/default -n schema.v1.ActivateHVACCmd -j
run mir cmd send weather/default -n schema.v1.ActivateHVACCmd -p '{"durationSec": 5}'
run mir cfg send weather/default -n schema.v1.DataRateProp -p '{"sec": 2}'
sleep 3
run mir cfg send weather/default -n schema.v1.DataRateProp -c
run mir tlm list weather
run mir tlm query weather/default -n schema.v1.Env --since 5m --limit 5 --chart temperature
run mir evt ls --limit 10

[ "$once" = 1 ] && exit 0
printf '\nThe hub (%s) and the weather device are running; try more commands in another terminal:\n' "$api"
printf '  export MIR_API=%s; export PATH=%s:$PATH\n  mir dev ls\n' "$api" "$bin"
printf 'Logs: %s/hub.log, %s/device.log. Ctrl-C to stop.\n' "$data" "$data"
wait $hub
