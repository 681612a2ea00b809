#!/usr/bin/env bash
# The cost model of docs/cost.md: starts moto (an AWS-compatible endpoint on loopback),
# drives simulated devices through the real handlers on the DynamoDB adapters, meters
# every DynamoDB request and prints the figures at list prices.
#   scripts/cost-model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"
export MOTO_PORT="${MOTO_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
scripts/moto.sh start >&2
trap 'scripts/moto.sh stop >&2' EXIT
MIR_TEST_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT" \
  cargo bench -q -p mir-hub --features localstack --bench cost --profile dev
