#!/usr/bin/env bash
# Installs the CDK app's npm dependencies and runs its offline tests (no AWS account,
# no cargo, no Docker), then cfn-lint on every synthesized template (scripts/cfn-lint.sh:
# errors fail, warnings are printed). Usable from CI on a fresh machine: needs node >= 20,
# npm, and python3 with venv (cfn-lint is installed from PyPI into infra/cdk/.venv).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1; then
  echo "node is required (>= 20)" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$major" -lt 20 ]]; then
  echo "node >= 20 is required, found $(node --version)" >&2
  exit 1
fi

export npm_config_update_notifier=false
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
npm test
bash scripts/cfn-lint.sh
