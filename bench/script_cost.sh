#!/usr/bin/env bash
# Redis-side cost per job of ferry's queue scripts: N no-op jobs through one worker against a
# private redis-server, measured by INFO commandstats (time spent inside Redis, so how the
# ferry binaries were built does not matter). Compares two ferry binaries in the same run,
# alternating them, e.g. a build before and after a change to queue/lua/.
#
#   bench/script_cost.sh BASE_FERRY NEW_FERRY [JOBS] [ROUNDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
base=$1 new=$2 jobs=${3:-20000} rounds=${4:-3}
bash scripts/services.sh up postgres >&2
eval "$(bash scripts/services.sh env)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
export REDIS_URL="redis://127.0.0.1:$port" FERRY_SCHEMA=ferry_bench_cost
"$new" migrate >/dev/null
for ((i = 0; i < jobs; i++)); do echo '{"kind":"noop"}'; done >"$dir/jobs.jsonl"

# One round: prints "script_usec_per_job all_usec_per_job hincrby_calls_per_job".
measure() {
  local bin=$1 prefix=$2
  export FERRY_REDIS_PREFIX=$prefix
  "$bin" enqueue --file "$dir/jobs.jsonl" >/dev/null
  redis-cli -p "$port" config resetstat >/dev/null
  FERRY_LOG=warn "$bin" worker --concurrency 256 2>>"$dir/worker.log" &
  local worker=$!
  until [[ $(redis-cli -p "$port" hget "$prefix:{default}:stats" 'noop|succeeded') == "$jobs" ]]; do
    sleep 0.05
  done
  kill -TERM $worker && wait $worker || true
  redis-cli -p "$port" info commandstats | tr -d '\r' | python3 -c '
import sys
jobs = int(sys.argv[1])
ev = total = hincrby = 0
for line in sys.stdin:
    if not line.startswith("cmdstat_"):
        continue
    name, rest = line[8:].split(":", 1)
    fields = dict(kv.split("=") for kv in rest.split(","))
    usec = int(fields["usec"])
    if name == "hincrby":
        hincrby = int(fields["calls"])
    if name == "hget":  # this script polling for the end
        continue
    total += usec
    if name in ("evalsha", "eval"):
        ev += usec
print(f"{ev / jobs:.2f} {total / jobs:.2f} {hincrby / jobs:.3f}")' "$jobs"
}

echo "jobs per round: $jobs; Redis server time per job in microseconds (scripts / all commands), HINCRBYs per job"
for ((r = 1; r <= rounds; r++)); do
  b=$(measure "$base" "cost_b$r")
  n=$(measure "$new" "cost_n$r")
  read -r bs ba bh <<<"$b"
  read -r ns na nh <<<"$n"
  python3 -c "import sys; bs,ba,bh,ns,na,nh=map(float,sys.argv[1:]); print(f'round $r: base {bs:.2f} / {ba:.2f} us, {bh:.3f} hincrby  new {ns:.2f} / {na:.2f} us, {nh:.3f} hincrby  new/base {ns/bs:.3f}x / {na/ba:.3f}x')" "$bs" "$ba" "$bh" "$ns" "$na" "$nh"
done
