#!/usr/bin/env bash
# Builds every function of shared/routes.json for AWS Lambda (arm64, provided.al2023)
# with cargo-lambda, into target/lambda/<crate>/bootstrap: the layout the CDK app takes
# with `npm run synth -- ../../target/lambda` or `-c mir:artifacts=../../target/lambda`.
#
#   scripts/build-lambdas.sh                 release, arm64 (what AWS runs)
#   scripts/build-lambdas.sh --host          debug build for this machine (smoke tests)
#   scripts/build-lambdas.sh install         only install cargo-lambda into .venv
#
# cargo-lambda (and zig, its cross linker) come from PyPI into the project's .venv.
# The cross build uses its own target directory (target/lambda-build, or
# $MIR_LAMBDA_TARGET_DIR) so a long release build does not hold the lock of target/.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
version="${CARGO_LAMBDA_VERSION:-1.9.2}"
out="$root/target/lambda"

install() {
  if [[ -x "$venv/bin/cargo-lambda" ]] && "$venv/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q "$version"; then
    return 0
  fi
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  echo "build-lambdas: installing cargo-lambda==$version into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==$version"
}

crates() {
  "$venv/bin/python" -c '
import json, sys
for f in json.load(open(sys.argv[1]))["functions"]:
    print(f["crate"])' "$root/shared/routes.json"
}

if [[ "${1:-}" == "install" ]]; then
  install
  exit 0
fi

install
export PATH="$venv/bin:$PATH"
cd "$root"

# One crate per build, so that features are not unified across functions: each binary
# links only the AWS SDK clients its `access` needs (shared/tests/lean_binaries.rs).
if [[ "${1:-}" == "--host" ]]; then
  for c in $(crates); do
    cargo lambda build -p "$c" --bin "$c" --lambda-dir "$out"
  done
else
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$'; then
    rustup target add aarch64-unknown-linux-gnu
  fi
  for c in $(crates); do
    CARGO_TARGET_DIR="${MIR_LAMBDA_TARGET_DIR:-$root/target/lambda-build}" \
      cargo lambda build --release --arm64 -p "$c" --bin "$c" --lambda-dir "$out"
  done
fi

missing=0
for c in $(crates); do
  if [[ -f "$out/$c/bootstrap" ]]; then
    printf '%-26s %s\n' "$c" "$(du -h "$out/$c/bootstrap" | cut -f1)"
  else
    echo "missing: $out/$c/bootstrap" >&2
    missing=1
  fi
done
exit "$missing"
