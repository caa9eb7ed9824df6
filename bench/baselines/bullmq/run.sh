#!/usr/bin/env bash
# BullMQ baseline: prints one JSON line on stdout, logs on stderr.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then
  npm ci --silent --no-audit --no-fund >&2
fi
exec node bench.mjs
