#!/usr/bin/env bash
# Smoke test of a Lambda binary under the Lambda emulator: starts `mir-fn-api-events`
# (host build) under `cargo lambda watch` with its environment pointing at the local AWS
# endpoint, invokes it once with an API Gateway fixture (`cargo lambda invoke
# --data-file`), and checks the answer. Then a device route (`mir-fn-heartbeat`) on a
# malformed rule event must fail the invocation (so AWS would retry/dead-letter it).
#
#   scripts/lambda-smoke.sh        uses MIR_TEST_AWS_ENDPOINT, else starts scripts/moto.sh
#
# Offline: cargo-lambda comes from PyPI (scripts/build-lambdas.sh install).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
endpoint="${MIR_TEST_AWS_ENDPOINT:-}"
if [[ -z "$endpoint" ]]; then
  scripts/moto.sh start
  endpoint="http://127.0.0.1:${MOTO_PORT:-4566}"
fi
scripts/build-lambdas.sh install
export PATH="$root/.venv/bin:$PATH"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}" AWS_REGION="${AWS_REGION:-us-east-1}"

prefix="mir-smoke-$$-$RANDOM"
.venv/bin/python infra/localstack/bootstrap.py --endpoint "$endpoint" --prefix "$prefix" >/dev/null

port="${MIR_SMOKE_PORT:-$((19000 + RANDOM % 1000))}"
log="$root/target/lambda-smoke.log"
mkdir -p "$root/target"
# The functions' environment, as the CDK app sets it for api-events and heartbeat (no
# IoT endpoint: neither publishes, so neither binary has the IoT clients; the others
# publish through AWS_ENDPOINT_URL).
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" --ignore-changes \
  --env-var "MIR_EVENTS_TABLE=$prefix-events,MIR_TWINS_TABLE=$prefix-twins,MIR_SCHEMAS_TABLE=$prefix-schemas,MIR_COMMANDS_TABLE=$prefix-commands,MIR_TELEMETRY_SINK=dynamodb,MIR_TELEMETRY_TABLE=$prefix-telemetry,MIR_EVENTS_TTL_DAYS=30,MIR_COMMANDS_TTL_DAYS=7,AWS_ENDPOINT_URL=$endpoint,RUST_LOG=info" \
  >"$log" 2>&1 </dev/null &
watch_pid=$!
cleanup() {
  kill -- "-$watch_pid" 2>/dev/null || kill "$watch_pid" 2>/dev/null || true
}
trap cleanup EXIT

ok=0
for _ in $(seq 1 120); do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
  kill -0 "$watch_pid" 2>/dev/null || break
  sleep 0.5
done
if [[ "$ok" != 1 ]]; then
  echo "lambda-smoke: cargo lambda watch did not listen on $port; log follows" >&2
  cat "$log" >&2
  exit 1
fi

passed=0
failed=0
check() {
  if [[ "$1" == 0 ]]; then passed=$((passed + 1)); echo "ok: $2"; else failed=$((failed + 1)); echo "FAILED: $2" >&2; fi
}

# 1. An HTTP route answers 200 with a JSON body.
answer="$(cargo lambda invoke mir-fn-api-events --invoke-address 127.0.0.1 --invoke-port "$port" \
  --data-file scripts/fixtures/api-events-request.json 2>&1)" || true
if echo "$answer" | .venv/bin/python -c '
import json, sys
resp = json.loads(sys.stdin.read())
assert resp["statusCode"] == 200, resp
body = json.loads(resp["body"])
assert isinstance(body, (dict, list)), body
print("api-events answered", resp["statusCode"], resp["body"][:120])
'; then
  check 0 "mir-fn-api-events answers GET /v1/events with 200"
else
  echo "$answer" >&2
  check 1 "mir-fn-api-events answers GET /v1/events with 200"
fi

# 2. A device route refuses a malformed event as a success, {"refused": ..., "retryable":
# false}, so that AWS does not retry what a retry cannot fix (shared::failure::settle).
bad='{"payload":"//8=","deviceId":"w1","clientId":"w1","receivedAt":1700000000000}'
if cargo lambda invoke mir-fn-heartbeat --invoke-address 127.0.0.1 --invoke-port "$port" \
  --data-ascii "$bad" >"$root/target/lambda-smoke-hb.out" 2>&1 \
  && grep -q '"refused"' "$root/target/lambda-smoke-hb.out" \
  && grep -qi "malformed" "$root/target/lambda-smoke-hb.out" \
  && grep -q '"retryable":false' "$root/target/lambda-smoke-hb.out"; then
  check 0 "mir-fn-heartbeat acknowledges a malformed heartbeat as refused, not retryable"
else
  cat "$root/target/lambda-smoke-hb.out" >&2
  check 1 "mir-fn-heartbeat acknowledges a malformed heartbeat as refused, not retryable"
fi

# 3. Every other function answers one invocation of its real event shape, in the order
#    a device's life gives them (hello first, so the schema is there for telemetry).
invoke_ok() { # function fixture what
  local out="$root/target/lambda-smoke-$1.out"
  if cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$port" \
    --data-file "scripts/fixtures/$2" >"$out" 2>&1; then
    check 0 "$1 $3"
  else
    cat "$out" >&2
    check 1 "$1 $3"
  fi
}
invoke_ok mir-fn-hello hello-event.json "stores the schema of a new device"
invoke_ok mir-fn-presence presence-event.json "marks it online"
invoke_ok mir-fn-telemetry telemetry-event.json "stores a telemetry batch"
invoke_ok mir-fn-reported reported-event.json "applies a reported property"
invoke_ok mir-fn-desired desired-event.json "publishes the desired properties"
for api in api-devices api-commands api-config api-telemetry; do
  out="$root/target/lambda-smoke-$api.out"
  cargo lambda invoke "mir-fn-$api" --invoke-address 127.0.0.1 --invoke-port "$port" \
    --data-file "scripts/fixtures/$api-request.json" >"$out" 2>&1 || true
  if .venv/bin/python -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["statusCode"]==200, r' "$out" 2>/dev/null; then
    check 0 "mir-fn-$api answers its GET route with 200"
  else
    cat "$out" >&2
    check 1 "mir-fn-$api answers its GET route with 200"
  fi
done
# An answer to a command nobody sent is refused, and acknowledged: a retry cannot fix it.
if cargo lambda invoke mir-fn-command-response --invoke-address 127.0.0.1 --invoke-port "$port" \
  --data-file scripts/fixtures/command-response-event.json >"$root/target/lambda-smoke-cr.out" 2>&1 \
  && grep -q '"refused":"unknown command id' "$root/target/lambda-smoke-cr.out" \
  && grep -q '"retryable":false' "$root/target/lambda-smoke-cr.out"; then
  check 0 "mir-fn-command-response refuses an unknown command id, not retried"
else
  cat "$root/target/lambda-smoke-cr.out" >&2
  check 1 "mir-fn-command-response refuses an unknown command id, not retried"
fi

# 4. A binary built alone links only the SDK clients its access needs, and refuses at
#    cold start a configuration naming one it lacks (heartbeat has no IoT client).
target_dir="$(cargo metadata --format-version 1 --no-deps | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build -q -p mir-fn-heartbeat --bin mir-fn-heartbeat
if MIR_TWINS_TABLE="$prefix-twins" MIR_EVENTS_TABLE="$prefix-events" MIR_IOT_DATA_ENDPOINT=iot.example \
  AWS_ENDPOINT_URL="$endpoint" AWS_LAMBDA_RUNTIME_API=127.0.0.1:9 \
  "$target_dir/debug/mir-fn-heartbeat" >"$root/target/lambda-smoke-lean.out" 2>&1; then
  check 1 "mir-fn-heartbeat refuses MIR_IOT_DATA_ENDPOINT at cold start (built without iot)"
elif grep -q 'built without the `iot` adapter' "$root/target/lambda-smoke-lean.out"; then
  check 0 "mir-fn-heartbeat refuses MIR_IOT_DATA_ENDPOINT at cold start (built without iot)"
else
  cat "$root/target/lambda-smoke-lean.out" >&2
  check 1 "mir-fn-heartbeat refuses MIR_IOT_DATA_ENDPOINT at cold start (built without iot)"
fi

if [[ "$failed" != 0 ]]; then
  echo "--- cargo lambda watch log ---" >&2
  tail -50 "$log" >&2
fi
echo "lambda-smoke: $passed passed, $failed failed"
[[ "$failed" == 0 ]]
