#!/usr/bin/env bash
# Sidekiq baseline: prints one JSON line on stdout, logs on stderr.
# Uses Redis db 13 only (FLUSHDB'd before/after); never touches db 0.
set -euo pipefail
cd "$(dirname "$0")"

if ! ruby -e 'require "sidekiq"' >/dev/null 2>&1 || ! command -v sidekiq >/dev/null 2>&1; then
  echo "[sidekiq-bench] installing ruby-sidekiq via apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -q ruby-sidekiq >&2
fi

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/13}"
export BENCH_PIDDIR="$(mktemp -d /tmp/ferry-sidekiq-bench.XXXXXX)"
export SIDEKIQ_LOG="$BENCH_PIDDIR/sidekiq.log"

RUBY_PID=""
cleanup() {
  # Stop the orchestrator if it is still running (it stops its own worker and
  # FLUSHes db 13 on the way out), then kill any sidekiq worker it left behind.
  if [ -n "$RUBY_PID" ] && kill -0 "$RUBY_PID" 2>/dev/null; then
    kill -TERM "$RUBY_PID" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$RUBY_PID" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$RUBY_PID" 2>/dev/null || true
  fi
  for f in "$BENCH_PIDDIR"/sidekiq.*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
      echo "[sidekiq-bench] killing leftover worker $pid" >&2
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$BENCH_PIDDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run in the background and `wait`, so that a signal to this script is handled
# at once (bash defers traps while a foreground child runs).
ruby bench.rb &
RUBY_PID=$!
wait "$RUBY_PID"
