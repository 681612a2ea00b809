#!/usr/bin/env bash
# Synthesize the CDK app into cdk.out.
#
#   npm run synth                         full synth: cargo-lambda-cdk runs `cargo lambda build`
#                                         for each function (cargo-lambda must be on PATH)
#   npm run synth -- ../../target/lambda  use prebuilt binaries laid out as <dir>/<crate>/bootstrap
#                                         (`cargo lambda build --release --arm64 --lambda-dir <dir>`)
#   MIR_ARTIFACTS=<dir> npm run synth     same as above
#   npm run synth -- <dir> -c mir:telemetrySink=dynamodb -c mir:stage=prod   extra cdk arguments
set -euo pipefail
cd "$(dirname "$0")/.."

artifacts="${MIR_ARTIFACTS:-}"
if [[ $# -gt 0 && "$1" != -* ]]; then
  artifacts="$1"
  shift
fi

# cargo-lambda installed by the repository's scripts into <repo>/.venv (pip install cargo-lambda)
if [[ -x ../../.venv/bin/cargo-lambda ]]; then
  export PATH="$(cd ../../.venv/bin && pwd):$PATH"
fi

args=(synth --quiet)
if [[ -n "$artifacts" ]]; then
  if [[ ! -d "$artifacts" ]]; then
    echo "artifacts dir not found: $artifacts" >&2
    exit 2
  fi
  args+=(-c "mir:artifacts=$(cd "$artifacts" && pwd)")
elif ! cargo lambda --version >/dev/null 2>&1; then
  echo "cargo-lambda is not on PATH: install it (python3 -m venv ~/.venvs/cargo-lambda && ~/.venvs/cargo-lambda/bin/pip install cargo-lambda," >&2
  echo "then export PATH=~/.venvs/cargo-lambda/bin:\$PATH) or pass a prebuilt artifacts dir: npm run synth -- <dir>" >&2
  exit 2
fi
exec npx cdk "${args[@]}" "$@"
