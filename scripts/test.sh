#!/usr/bin/env bash
# The test command: start the services the tests need, then format check, lints, and every
# test (unit, doc and integration) against the real services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh up postgres redis mongo s3 smtp
bash scripts/services.sh browser
eval "$(bash scripts/services.sh env)"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
FERRY_BIN="$PWD/target/debug/ferry" cargo test --workspace --locked
