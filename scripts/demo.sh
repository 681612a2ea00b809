#!/usr/bin/env bash
# The main job: builds the `mir` CLI and the weather example device, starts the local
# hub (`mir local`) and the simulated device, waits until the device is online, then
# runs the commands a newcomer types next. Leaves both running until Ctrl-C, or stops
# after the tour with --once.
#
# - Default ports (HTTP 8180, MQTT 1883, MQTT/mTLS 8883) are used when free; a port
#   that is taken is replaced by a free one, and the tour uses what the hub got.
# - Every step is checked: the script exits 1 naming the step that failed.
# - MIR_DATA_DIR: where the hub keeps its data (default .mir-demo/, reused across runs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"

once=0
for arg in "$@"; do
  case "$arg" in
    --once) once=1 ;;
    -h | --help)
      echo "usage: scripts/demo.sh [--once]   (--once: run the tour, then stop)"
      exit 0
      ;;
    *)
      echo "scripts/demo.sh: unknown argument '$arg' (usage: scripts/demo.sh [--once])" >&2
      exit 2
      ;;
  esac
done

current_step="starting"
hub=""
device=""
data=""
fail() {
  echo >&2
  echo "demo failed at step: $current_step" >&2
  [ -n "$*" ] && echo "  $*" >&2
  if [ -n "$data" ]; then
    for log in hub.log device.log; do
      if [ -s "$data/$log" ]; then
        echo "--- last lines of $data/$log" >&2
        tail -n 15 "$data/$log" >&2
      fi
    done
  fi
  exit 1
}
stop_all() {
  [ -n "$device" ] && kill "$device" 2>/dev/null || true
  [ -n "$hub" ] && kill "$hub" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM
step() { current_step="$1"; printf '\n==> %s\n' "$1"; }

# wait_for, hub_endpoint, weather_yaml
. scripts/lib/local-hub.sh

port_free() { ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { if port_free "$1"; then echo "$1"; else echo 0; fi; }

step "build mir and the weather device (the first build takes a few minutes)"
cargo build -q -p mir-cli --bin mir || fail "cargo build -p mir-cli failed"
cargo build -q -p mir-device-sdk --example weather || fail "cargo build of the weather example failed"
bin="$CARGO_TARGET_DIR/debug"
export PATH="$bin:$PATH"

step "start the local hub (mir local)"
data="${MIR_DATA_DIR:-$root/.mir-demo}"
mkdir -p "$data" 2>/dev/null || fail "cannot create the data directory $data"
rm -f "$data/endpoints.json"
http_port=$(pick_port 8180)
mqtt_port=$(pick_port 1883)
mqtts_port=$(pick_port 8883)
mir local --data-dir "$data" --http-port "$http_port" --mqtt-port "$mqtt_port" \
  --mqtts-port "$mqtts_port" --log-level warn >"$data/hub.out" 2>"$data/hub.log" &
hub=$!
hub_ready() { kill -0 "$hub" 2>/dev/null && [ -s "$data/endpoints.json" ]; }
wait_for 60 hub_ready || fail "mir local did not write $data/endpoints.json"
api=$(hub_endpoint "$data" http)
mqtt=$(hub_endpoint "$data" mqtt)
[ -n "$api" ] && [ -n "$mqtt" ] || fail "endpoints.json has no http or mqtt endpoint"
export MIR_API="$api"
echo "hub: API $api, MQTT $mqtt, console $api/"
[ "$http_port" = 8180 ] || echo "(port 8180 was taken: the hub listens on $api instead)"

step "start the weather device"
weather_yaml "$data" "$mqtt" || fail "could not write $data/weather/device.yaml"
RUST_LOG=warn "$bin/examples/weather" "$data/weather/device.yaml" >"$data/device.log" 2>&1 &
device=$!

step "wait until the device is online"
device_online() {
  kill -0 "$device" 2>/dev/null || return 1
  mir device ls weather/default -o json 2>/dev/null | grep -q '"online": *true'
}
wait_for 60 device_online || fail "the weather device did not come online (see $data/device.log)"

# The tour. Each command is printed, then run; a failing command fails the demo.
# Prints a command line as typed: arguments with spaces or quotes in single quotes.
shown() {
  local out="" a
  for a in "$@"; do
    case "$a" in
      *[[:space:]\"\'\{\}\$]*) out+=" '${a//\'/\'\\\'\'}'" ;;
      *) out+=" $a" ;;
    esac
  done
  printf '%s' "${out# }"
}
run() {
  current_step="mir $(shown "$@")"
  printf '\n$ mir %s\n' "$(shown "$@")"
  mir "$@" || fail "the command exited with status $?"
}
# At least three stored readings (the chart needs a few points).
has_telemetry() {
  [ "$(mir tlm query weather/default -n schema.v1.Env --since 5m -o json | grep -c '"temperature"')" -ge 3 ]
}
reported() { mir device ls weather/default -o json | tr -d ' \n' | grep -q '"schema.v1.DataRateStatus":{"sec":2}'; }

run device ls
run cmd send weather
run cmd send weather/default -n schema.v1.ActivateHVACCmd -j
run cmd send weather/default -n schema.v1.ActivateHVACCmd -p '{"durationSec": 5}'
run cfg send weather/default -n schema.v1.DataRateProp -p '{"sec": 2}'
current_step="the device reports DataRateStatus back"
wait_for 20 reported || fail "the reported DataRateStatus did not reach the twin"
run cfg send weather/default -n schema.v1.DataRateProp -c
run device ls weather/default -o yaml
current_step="telemetry arrives"
wait_for 30 has_telemetry || fail "fewer than 3 schema.v1.Env readings were stored"
run tlm list weather
run tlm query weather/default -n schema.v1.Env --since 5m --limit 5 --chart temperature
run evt ls --limit 10

printf '\ntour completed: every step succeeded\n'
[ "$once" = 1 ] && exit 0
current_step="running"
printf '\nThe hub (%s) and the weather device are running; try more commands in another terminal:\n' "$api"
printf '  export MIR_API=%s PATH=%s:$PATH\n  mir dev ls\n' "$api" "$bin"
printf 'Logs: %s/hub.log, %s/device.log. Ctrl-C to stop.\n' "$data" "$data"
wait "$hub" || true
