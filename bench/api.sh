#!/usr/bin/env bash
# The enqueue API under load: `ferry serve` (release build) takes N no-op enqueues with the
# enqueue token over keep-alive connections (ApacheBench), with scopes, quota and the batched
# audit on, as shipped; in the same run, the same load on the baseline build, a commit before
# scopes, quota and audit existed (BASELINE, default a80b533), so the two figures compare.
# Runs alternate baseline / current ROUNDS times (default 3) to spread the machine's noise.
# Usage: bench/api.sh [REQUESTS] [CONCURRENCY]; BASELINE=none skips the baseline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-20000}
c=${2:-32}
rounds=${ROUNDS:-3}
baseline=${BASELINE:-a80b533}
bash scripts/services.sh up postgres redis >&2
command -v ab >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q apache2-utils >&2
eval "$(bash scripts/services.sh env)"
cargo build --quiet --release -p ferry-cli
current=$PWD/target/release/ferry
if [[ $baseline != none ]]; then
  # Its own worktree and target dir, kept between runs (the first build takes ~10 minutes).
  wt=${FERRY_BENCH_DIR:-/tmp/ferry-bench}/baseline-$baseline
  [[ -d $wt ]] || git worktree add --detach "$wt" "$baseline" >&2
  (cd "$wt" && cargo build --quiet --release -p ferry-cli)
  old=$wt/target/release/ferry
fi
dir=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT
export FERRY_API_TOKEN="bench-enqueue-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export FERRY_ADMIN_TOKEN="bench-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
echo '{"kind":"noop"}' >"$dir/body.json"

# run LABEL BINARY SCOPED: one `ferry serve` under ab, then its audit count and cleanup.
run() {
  local label=$1 ferry=$2 scoped=$3 prefix="bench$RANDOM"
  {
    echo "[postgres]"; echo "schema = \"$prefix\""
    echo "[redis]"; echo "prefix = \"$prefix\""
    # The baseline predates api.enqueue_kinds (its enqueue token took every kind).
    [[ $scoped == yes ]] && { echo "[api]"; echo 'enqueue_kinds = ["noop"]'; }
  } >"$dir/ferry.toml"
  "$ferry" --config "$dir/ferry.toml" migrate >/dev/null
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$ferry" --config "$dir/ferry.toml" serve --listen "127.0.0.1:$port" 2>"$dir/serve.log" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  ab -q -k -c "$c" -n "$n" -p "$dir/body.json" -T application/json \
    -H "Authorization: Bearer $FERRY_API_TOKEN" "http://127.0.0.1:$port/v1/jobs" >"$dir/ab.txt"
  local rps p50 p99 non2xx audited
  rps=$(awk '/Requests per second/ {print $4}' "$dir/ab.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$dir/ab.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$dir/ab.txt")
  non2xx=$(awk '/Non-2xx/ {print $3}' "$dir/ab.txt")
  sleep 1
  audited=$(psql -X -q -At "$DATABASE_URL" -c "SELECT count(*) FROM \"$prefix\".audit_log WHERE action = 'jobs.enqueue'")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-9s %10s req/s  p50 %3s ms  p99 %3s ms  non-2xx %s  audited %s\n' \
    "$label" "$rps" "$p50" "$p99" "${non2xx:-0}" "$audited"
  psql -X -q -c "SET client_min_messages = warning; DROP SCHEMA \"$prefix\" CASCADE" "$DATABASE_URL" >/dev/null
  redis-cli --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli del >/dev/null
}

echo "ab -k -c $c -n $n, noop, enqueue token; $(nproc) cores"
for _ in $(seq "$rounds"); do
  [[ $baseline != none ]] && run "$baseline" "$old" no
  run current "$current" yes
done
