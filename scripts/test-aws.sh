#!/usr/bin/env bash
# The AWS side's tests, as the test command runs them: starts moto's server on
# 127.0.0.1:4566 (scripts/moto.sh, installed into .venv from PyPI), runs the store
# conformance suite and the handler tests through the AWS adapters against it, the
# adapters' unit tests (Timestream SQL and result fixtures, configuration), and the
# Lambda smoke test under `cargo lambda watch`; stops the server afterwards.
#
#   scripts/test-aws.sh              everything
#   scripts/test-aws.sh --no-smoke   without the cargo-lambda smoke test
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

started=0
if ! scripts/moto.sh status 2>/dev/null; then
  scripts/moto.sh start
  started=1
fi
cleanup() {
  if [[ "$started" == 1 ]]; then scripts/moto.sh stop; fi
}
trap cleanup EXIT

export MIR_TEST_AWS_ENDPOINT="http://127.0.0.1:${MOTO_PORT:-4566}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}" AWS_REGION="${AWS_REGION:-us-east-1}"

cargo test -p mir-shared --features aws,lambda -- --include-ignored
if [[ "${1:-}" != "--no-smoke" ]]; then
  scripts/lambda-smoke.sh
fi
