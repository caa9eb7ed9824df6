#!/usr/bin/env bash
# Benchmarks: builds release binaries, starts the services, runs ferry and the baselines
# against the same local services. Usage: bench/run.sh queue|cluster-overhead|cluster-spread|listing|memory|sync|backup|notify|notify-realtime|files|import|http|flow|rate [options] (see --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh up postgres redis mongo s3 >&2
if [ "${1:-}" = files ]; then
  # The files baseline is Debian's rclone; the source is moto.
  bash scripts/services.sh up s3second >&2
  command -v rclone >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone >&2
fi
eval "$(bash scripts/services.sh env)"
cargo build --quiet --release -p ferry-cli -p ferry-bench
exec ./target/release/ferry-bench "$@"
