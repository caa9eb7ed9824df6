#!/usr/bin/env bash
# The test command: start the services the tests need, then the deployment files check,
# format check, lints, and every test (unit, doc and integration) against the real services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh up postgres redis mongo s3 s3second smtp
bash scripts/services.sh browser
eval "$(bash scripts/services.sh env)"

bash scripts/check-deploy.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
FERRY_BIN="$PWD/target/debug/ferry" cargo test --workspace --locked
