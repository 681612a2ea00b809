#!/usr/bin/env bash
# Rebuilds console/dist/ (committed; the hub embeds it) from console/src/:
# installs the locked npm packages, then bundles with esbuild (build.mjs).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
node build.mjs
