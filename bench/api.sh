#!/usr/bin/env bash
# The enqueue API under load: `ferry serve` (release build) takes N no-op enqueues with the
# enqueue token over keep-alive connections (ApacheBench), with scopes, quota and the batched
# audit on, as shipped. Usage: bench/api.sh [REQUESTS] [CONCURRENCY]; FERRY=path overrides
# the binary (e.g. an older build, to compare in the same run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-20000}
c=${2:-32}
bash scripts/services.sh up postgres redis >&2
command -v ab >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q apache2-utils >&2
eval "$(bash scripts/services.sh env)"
ferry=${FERRY:-target/release/ferry}
[ -n "${FERRY:-}" ] || cargo build --quiet --release -p ferry-cli
dir=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT
prefix="bench$RANDOM"
cat >"$dir/ferry.toml" <<TOML
[postgres]
schema = "$prefix"
[redis]
prefix = "$prefix"
[api]
enqueue_kinds = ["noop"]
TOML
export FERRY_API_TOKEN="bench-enqueue-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export FERRY_ADMIN_TOKEN="bench-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$ferry" --config "$dir/ferry.toml" migrate >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$ferry" --config "$dir/ferry.toml" serve --listen "127.0.0.1:$port" 2>"$dir/serve.log" & pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
echo '{"kind":"noop"}' >"$dir/body.json"
ab -q -k -c "$c" -n "$n" -p "$dir/body.json" -T application/json \
  -H "Authorization: Bearer $FERRY_API_TOKEN" "http://127.0.0.1:$port/v1/jobs" >"$dir/ab.txt"
grep -E "Requests per second|Non-2xx|Failed requests|^  50%|^  99%|^ 100%" "$dir/ab.txt"
sleep 1
psql -X -q -At "$DATABASE_URL" -c "SELECT 'audited enqueues: ' || count(*) FROM \"$prefix\".audit_log WHERE action = 'jobs.enqueue'"
psql -X -q -c "SET client_min_messages = warning; DROP SCHEMA \"$prefix\" CASCADE" "$DATABASE_URL" >/dev/null
redis-cli --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli del >/dev/null
