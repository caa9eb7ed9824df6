#!/usr/bin/env bash
# BullMQ baseline: prints one JSON line on stdout, logs on stderr.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/bullmq ] || [ ! -d node_modules/ioredis ]; then
  if ! npm ci --silent --no-audit --no-fund >&2; then
    # The lock was generated against a registry mirror that lacks msgpackr-extract's
    # darwin/win32/linux-arm optional binaries, so `npm ci`'s lock-sync check can
    # fail. `npm install --no-save` still honours the locked versions and does not
    # rewrite package.json / package-lock.json.
    echo "[bullmq-bench] npm ci failed; falling back to npm install --no-save" >&2
    npm install --no-save --silent --no-audit --no-fund >&2
  fi
fi
exec node bench.mjs
