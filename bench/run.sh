#!/usr/bin/env bash
# Benchmarks: builds release binaries, starts the services, runs ferry and the baselines
# against the same local services. Usage: bench/run.sh queue|sync|backup|notify [options] (see --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh up postgres redis mongo s3 >&2
eval "$(bash scripts/services.sh env)"
cargo build --quiet --release -p ferry-cli -p ferry-bench
exec ./target/release/ferry-bench "$@"
