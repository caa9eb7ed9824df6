#!/usr/bin/env bash
# The concurrency sweep behind each baseline's default: every setting RUNS times (default 3),
# one JSON line per run on stdout (see README.md).
#   bench/baselines/sweep.sh bullmq "20 50 100 200 500"
#   bench/baselines/sweep.sh sidekiq "2 5 10 25 50"
set -euo pipefail
system=${1:?usage: $0 bullmq|sidekiq "CONCURRENCY..." [RUNS]}
settings=${2:?give the concurrency settings to try, e.g. "20 50 100 200 500"}
runs=${3:-3}
here=$(dirname "$0")
for c in $settings; do
  for _ in $(seq "$runs"); do
    CONCURRENCY=$c bash "$here/$system/run.sh"
  done
done
