#!/usr/bin/env bash
# Cold start and peak memory of every Lambda binary (BENCHMARKS.md, "Cold start"):
# builds each function of shared/routes.json alone in release for this host (so each
# links only the SDK clients its `access` needs), starts moto, creates the tables, and
# runs each binary under scripts/cold_start.py, a Lambda Runtime API on loopback that
# serves the function's fixture event and times it.
#
#   scripts/cold-start.sh [--runs N] [--warm N]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mir-serverless/target}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}" AWS_REGION="${AWS_REGION:-us-east-1}"
bins="$root/target/cold-start"
mkdir -p "$bins"
crates=$(python3 -c 'import json; print(" ".join(f["crate"] for f in json.load(open("shared/routes.json"))["functions"]))')
for c in $crates; do
  # One crate per build: features are not unified with the other functions'.
  cargo build -q --release -p "$c" --bin "$c"
  cp "$CARGO_TARGET_DIR/release/$c" "$bins/$c"
done
export MOTO_PORT="${MOTO_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
scripts/moto.sh start >&2
trap 'scripts/moto.sh stop >&2' EXIT
endpoint="http://127.0.0.1:$MOTO_PORT"
prefix="mir-cold-$$-$RANDOM"
python=python3
[[ -x .venv/bin/python ]] && python=.venv/bin/python
"$python" infra/localstack/bootstrap.py --endpoint "$endpoint" --prefix "$prefix" >/dev/null
echo "host: $(uname -m), $(nproc) cores; $(rustc --version)"
"$python" scripts/cold_start.py --bin-dir "$bins" --endpoint "$endpoint" --prefix "$prefix" "$@"
