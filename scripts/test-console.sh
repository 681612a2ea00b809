#!/usr/bin/env bash
# The console in headless Chromium: installs Chromium (Debian's package) and the
# console's npm packages, builds `mir` and the weather example device, starts
# `mir local` on free ports with a fresh data dir and the weather device, waits until it
# is online, then runs console/tests/browser/ (playwright-core) against it.
# Screenshots: target/console-screenshots/. Bounded: every wait has a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"

hub=""
device=""
data=$(mktemp -d "${TMPDIR:-/tmp}/mir-console-test.XXXXXX")
fail() {
  echo "test-console failed: $*" >&2
  for log in hub.log device.log; do
    if [ -s "$data/$log" ]; then
      echo "--- last lines of $data/$log" >&2
      tail -n 20 "$data/$log" >&2
    fi
  done
  exit 1
}
stop_all() {
  [ -n "$device" ] && kill "$device" 2>/dev/null || true
  [ -n "$hub" ] && kill "$hub" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# wait_for, hub_endpoint, weather_yaml
. scripts/lib/local-hub.sh

chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
  echo "installing chromium (Debian package)"
  if ! apt-get install -y -q chromium >/dev/null; then
    apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null || fail "could not install chromium"
  fi
fi
export MIR_CHROMIUM="$chromium"

(cd console && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in console/ failed"
(cd console && node --test tests/unit/) || fail "the console's unit tests failed"
# The committed console/dist (what the hub embeds) must be what console/src builds to.
(cd console && node build.mjs --out "$data/dist" >/dev/null) || fail "the console does not build"
diff -r "$data/dist" console/dist >/dev/null || fail "console/dist is not what console/src builds to: run console/build.sh and commit console/dist"

cargo build -q -p mir-cli --bin mir || fail "cargo build -p mir-cli failed"
cargo build -q -p mir-device-sdk --example weather || fail "cargo build of the weather example failed"
bin="$CARGO_TARGET_DIR/debug"

"$bin/mir" local --data-dir "$data" --http-port 0 --mqtt-port 0 --mqtts-port 0 \
  --log-level warn >"$data/hub.out" 2>"$data/hub.log" &
hub=$!
hub_ready() { kill -0 "$hub" 2>/dev/null && [ -s "$data/endpoints.json" ]; }
wait_for 60 hub_ready || fail "mir local did not write $data/endpoints.json"
api=$(hub_endpoint "$data" http)
mqtt=$(hub_endpoint "$data" mqtt)
[ -n "$api" ] && [ -n "$mqtt" ] || fail "endpoints.json has no http or mqtt endpoint"

weather_yaml "$data" "$mqtt" -e "s|^  dataRateSec: .*|  dataRateSec: 1|" ||
  fail "could not write $data/weather/device.yaml"
RUST_LOG=warn "$bin/examples/weather" "$data/weather/device.yaml" >"$data/device.log" 2>&1 &
device=$!

device_online() {
  kill -0 "$device" 2>/dev/null || return 1
  MIR_API="$api" "$bin/mir" device ls weather/default -o json 2>/dev/null | grep -q '"online": *true'
}
wait_for 60 device_online || fail "the weather device did not come online"
has_telemetry() {
  [ "$(MIR_API="$api" "$bin/mir" tlm query weather/default -n schema.v1.Env --since 5m -o json | grep -c '"temperature"')" -ge 2 ]
}
wait_for 30 has_telemetry || fail "no schema.v1.Env readings were stored"

echo "console at $api/ (screenshots: target/console-screenshots/)"
mkdir -p target/console-screenshots
(cd console && MIR_CONSOLE_URL="$api" MIR_SCREENSHOTS="$root/target/console-screenshots" \
  timeout 300 node --test --test-concurrency=1 tests/browser/) || fail "the browser tests failed"
echo "console browser tests passed"
