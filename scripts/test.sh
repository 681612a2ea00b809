#!/usr/bin/env bash
# Runs every test of the project on a fresh machine of this kind:
#   Rust workspace (unit, handler, conformance, end-to-end), lint, and the CDK app.
# Whatever a test needs is installed here (Python venv for moto, npm packages).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# A persistent target dir outside the clone speeds up repeated runs; a cold one works too.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1

step() { printf '\n==== %s ====\n' "$*"; }

aws_endpoint_started=0
cleanup() {
  if [ "$aws_endpoint_started" = 1 ] && [ -x scripts/moto.sh ]; then
    scripts/moto.sh stop || true
  fi
}
trap cleanup EXIT

step "rustfmt"
cargo fmt --all -- --check

# The AWS adapters' conformance tests need an AWS-compatible endpoint (moto's server,
# installed into .venv by scripts/moto.sh) on 127.0.0.1:4566.
if [ -x scripts/moto.sh ]; then
  # 4566 as in LocalStack, or any free port when something already listens there.
  export MOTO_PORT="${MOTO_PORT:-4566}"
  if (echo >"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null; then
    MOTO_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  step "AWS-compatible endpoint (moto) on 127.0.0.1:$MOTO_PORT"
  scripts/moto.sh start
  aws_endpoint_started=1
  export MIR_TEST_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
fi

# Tests that need the AWS endpoint are #[ignore]d, so that a run without one reports them
# as ignored; here the endpoint runs, so they run too, and no test may be skipped.
step "cargo test (workspace)"
include_ignored=()
[ "$aws_endpoint_started" = 1 ] && include_ignored=(-- --include-ignored)
test_log=$(mktemp)
cargo test --workspace --all-features --no-fail-fast "${include_ignored[@]}" 2>&1 | tee "$test_log"
skipped=$(grep -Eo '[0-9]+ ignored' "$test_log" | awk '{s += $1} END {print s + 0}')
rm -f "$test_log"
if [ "$skipped" != 0 ]; then
  echo "error: $skipped test(s) were skipped (ignored); the test command runs every test" >&2
  exit 1
fi

if [ "$aws_endpoint_started" = 1 ]; then
  step "end-to-end tests again with mir local --profile localstack (AWS adapters on moto)"
  MIR_E2E_PROFILE=localstack cargo test -p mir-cli --all-features --test e2e
fi

step "the README's first command: scripts/demo.sh --once (scripts/test-demo.sh)"
scripts/test-demo.sh

step "console in headless Chromium (scripts/test-console.sh)"
bash scripts/test-console.sh

step "clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

if [ -x scripts/lambda-smoke.sh ]; then
  step "Lambda binaries under cargo lambda watch"
  scripts/lambda-smoke.sh
fi

step "device SDK portability: cargo check for aarch64 and armv7"
scripts/cross-check.sh

step "CDK app (synth + assertions, offline)"
bash infra/cdk/scripts/test.sh

step "all tests passed"
