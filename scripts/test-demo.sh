#!/usr/bin/env bash
# Tests the README's first command: runs `scripts/demo.sh --once` from a clean data
# directory, with the default ports taken so that the demo has to use others, and checks
# what its tour shows. Then checks that a failing step makes it exit 1 naming the step.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"

passed=0
failed=0
check() { # check NAME PATTERN FILE
  if grep -Eq -- "$2" "$3"; then
    passed=$((passed + 1)); echo "ok   - $1"
  else
    failed=$((failed + 1)); echo "FAIL - $1 (no match for /$2/ in $3)"
  fi
}
expect() { # expect NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   - $name"
  else failed=$((failed + 1)); echo "FAIL - $name"; fi
}

work=$(mktemp -d)
holders=()
cleanup() {
  for p in "${holders[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Take the default ports (those still free) for the length of the first run.
for port in 8180 1883 8883; do
  python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
except OSError:
    sys.exit(0)
time.sleep(600)' "$port" &
  holders+=($!)
done
sleep 0.5

echo "# scripts/demo.sh --once (default ports taken, fresh data directory)"
MIR_DATA_DIR="$work/data" bash scripts/demo.sh --once >"$work/out.txt" 2>"$work/err.txt"
rc=$?
for p in "${holders[@]}"; do kill "$p" 2>/dev/null || true; done
expect "the demo exits 0" [ "$rc" = 0 ]
if [ "$rc" != 0 ]; then sed 's/^/  | /' "$work/out.txt" "$work/err.txt" | tail -40; fi
check "the hub moved off the taken HTTP port" 'port 8180 was taken: the hub listens on http://127\.0\.0\.1:[0-9]+' "$work/out.txt"
check "mir local prints the console's address" '^  Console   http://127\.0\.0\.1:[0-9]+/$' "$work/data/hub.log"
check "the demo names the console" '^hub: API http://127\.0\.0\.1:[0-9]+, MQTT .*, console http://127\.0\.0\.1:[0-9]+/$' "$work/out.txt"
check "the device is online" '^weather/default +weather +true' "$work/out.txt"
check "a command answered with SUCCESS" '^1\. weather/default COMMAND_RESPONSE_STATUS_SUCCESS' "$work/out.txt"
check "the configuration reported back" '^ +schema\.v1\.DataRateStatus:' "$work/out.txt"
check "telemetry rows" '^20[0-9-]+ [0-9:]+ +[0-9]+ +[0-9]+ +[0-9]+ .* roof$' "$work/out.txt"
check "events: the command completed" 'CommandCompleted +weather/default' "$work/out.txt"
check "events: the reported properties" 'ReportedPropertiesUpdated +weather/default +reported schema\.v1\.DataRateStatus' "$work/out.txt"
check "the tour completed" '^tour completed: every step succeeded$' "$work/out.txt"
gone() { ! pgrep -f -- "$1" >/dev/null; }
expect "the hub was stopped" gone "local --data-dir $work/data"
expect "the device was stopped" gone "examples/weather $work/data"

echo "# a step that fails stops the demo, naming the step"
MIR_DATA_DIR=/dev/null/mir-demo bash scripts/demo.sh --once >"$work/out2.txt" 2>"$work/err2.txt"
rc=$?
expect "the demo exits 1" [ "$rc" = 1 ]
check "the failed step is named" '^demo failed at step: start the local hub \(mir local\)$' "$work/err2.txt"
check "the reason is given" 'cannot create the data directory /dev/null/mir-demo' "$work/err2.txt"

echo "# usage"
bash scripts/demo.sh --bogus >"$work/out3.txt" 2>&1
rc=$?
expect "an unknown argument exits 2" [ "$rc" = 2 ]
check "with the usage" 'usage: scripts/demo.sh \[--once\]' "$work/out3.txt"

echo
echo "demo: $passed passed, $failed failed"
[ "$failed" = 0 ]
