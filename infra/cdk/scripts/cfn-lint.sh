#!/usr/bin/env bash
# Synthesizes every stack with the real CDK CLI (default context, the Timestream sink,
# the telemetry feed on, and the example module offline-alert's app) and runs cfn-lint on
# the templates. Fails on any cfn-lint error; warnings are
# printed and allowed. No AWS account, no cargo, no Docker: the functions' code is a fake
# prebuilt bootstrap per routes.json crate (`-c mir:artifacts=<dir>`), which leaves the
# templates as they are for a real deployment (only the asset hashes differ).
#
#   scripts/cfn-lint.sh              install cfn-lint if needed, synth, lint
#   scripts/cfn-lint.sh install      only install cfn-lint into infra/cdk/.venv
#
# cfn-lint comes from PyPI into the CDK app's own virtual environment (infra/cdk/.venv,
# like scripts/moto.sh's .venv; separate, because moto pins its own cfn-lint).
# Environment: CFN_LINT_VERSION (pinned below), PYTHON (python3).
# Expects the app compiled (`npm run build`, as `npm test` does).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$PWD/.venv"
version="${CFN_LINT_VERSION:-1.58.0}"
python="${PYTHON:-python3}"

install() {
  if [[ -x "$venv/bin/cfn-lint" ]] && [[ "$("$venv/bin/cfn-lint" --version 2>/dev/null)" == "cfn-lint $version" ]]; then
    return 0
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "cfn-lint: creating $venv" >&2
    "$python" -m venv "$venv"
  fi
  echo "cfn-lint: installing cfn-lint==$version into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$version"
}

install
[[ "${1:-}" == install ]] && exit 0

if [[ ! -f build/bin/mir.js ]]; then
  echo "cfn-lint: build/bin/mir.js missing: run npm run build first" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
artifacts="$work/artifacts"
for crate in $(node -e 'for (const f of require("../../shared/routes.json").functions) console.log(f.crate)'); do
  mkdir -p "$artifacts/$crate"
  printf '#!/bin/sh\n# placeholder for cfn-lint\n' >"$artifacts/$crate/bootstrap"
done
# The example module's Lambda (lib/offline-alert-stack.ts, OFFLINE_ALERT_BINARY).
mkdir -p "$artifacts/offline-alert-lambda"
printf '#!/bin/sh\n# placeholder for cfn-lint\n' >"$artifacts/offline-alert-lambda/bootstrap"

# "default" is what `cdk deploy` does with no -c; "timestream" the opt-in sink.
# "module" is the example module's own app, beside a stage (its inputs are that stage's outputs).
module_app="--app 'node build/bin/offline-alert.js' -c mir:eventBusArn=arn:aws:events:eu-west-1:111122223333:event-bus/mir-dev-data-EventFeedBus -c mir:apiUrl=https://abc123.execute-api.eu-west-1.amazonaws.com -c mir:apiPolicyArn=arn:aws:iam::111122223333:policy/mir-dev-operator"
declare -A flavours=(
  [default]=""
  [timestream]="-c mir:telemetrySink=timestream"
  [telemetryfeed]="-c mir:telemetryFeed=true"
  [module]="$module_app"
)
status=0
for flavour in default timestream telemetryfeed module; do
  out="$work/cdk.out.$flavour"
  # The flavour's extra arguments are words, some of them quoted.
  eval "npx --no-install cdk synth --quiet --no-notices --no-version-reporting -o \"\$out\" \
    -c \"mir:artifacts=\$artifacts\" ${flavours[$flavour]}" >/dev/null
  templates=("$out"/*.template.json)
  echo "cfn-lint ($flavour): ${#templates[@]} templates: $(cd "$out" && ls ./*.template.json | xargs -n1 basename | tr '\n' ' ')"
  # cfn-lint exit code: bit 2 = errors, 4 = warnings, 8 = informational.
  set +e
  "$venv/bin/cfn-lint" --format parseable -- "${templates[@]}" | sed "s|$out/||"
  rc=${PIPESTATUS[0]}
  set -e
  if (( rc & 2 )) || (( rc == 1 )); then
    echo "cfn-lint ($flavour): errors (exit $rc)" >&2
    status=1
  elif (( rc & 4 )); then
    echo "cfn-lint ($flavour): no errors, warnings above"
  else
    echo "cfn-lint ($flavour): clean"
  fi
done
exit "$status"
