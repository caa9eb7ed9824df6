#!/usr/bin/env bash
# Sets up local services and runs ferry end to end on local defaults:
#  1. sync: seeds a school database (the seeds' schema), mirrors it into MongoDB with a
#     chunked full sync, verifies every document, installs change capture, changes rows and
#     shows the mirror following (the scheduler relays the captured changes);
#  2. the queue: a job that retries then succeeds, one that dies, and a checkpointing long job
#     whose worker is killed with SIGKILL and which a second worker resumes;
#  3. the scheduler: a schedule firing every 5 seconds, shown by `ferry schedules ls`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh up postgres redis mongo
eval "$(bash scripts/services.sh env)"
export FERRY_REDIS_PREFIX="ferry-demo" FERRY_SCHEMA="ferry_demo" MONGODB_DATABASE="ferry_demo"
cargo build --quiet --release -p ferry-cli
FERRY=./target/release/ferry
ferry() { "$FERRY" --config "$config" "$@"; }
logs=$(mktemp -d)
config="$logs/ferry.toml"
cat >"$config" <<'TOML'
[sync]
schemas = ["school_demo"]
[[sync.table]]
name = "school_demo.profiles"
exclude_columns = ["password_hash"]
[[schedule]]
name = "every-5s"
cron = "*/5 * * * * *"
kind = "noop"
TOML
cleanup() { kill "${W1:-}" "${W2:-}" "${S1:-}" 2>/dev/null || true; }
trap cleanup EXIT

echo "== seed the school database (schema school_demo) and migrate ferry's schema"
psql -q "$DATABASE_URL" -c 'DROP SCHEMA IF EXISTS school_demo CASCADE; CREATE SCHEMA school_demo'
{ echo 'SET search_path = school_demo;'; cat tests/fixtures/school.sql; } | psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL"
ferry migrate
echo "== worker 1 (logs in $logs)"
"$FERRY" --config "$config" worker >"$logs/w1.log" 2>&1 & W1=$!
echo "== scheduler (cron fires, change relay, run reconciler)"
"$FERRY" --config "$config" scheduler >"$logs/s1.log" 2>&1 & S1=$!
sleep 1

echo "== what will be mirrored"
ferry sync tables
echo "== full sync into MongoDB database ferry_demo"
ferry sync full --wait
echo "== verify every document"
ferry sync verify --deep
echo "== change capture: triggers, then writes and a delete"
ferry sync install-triggers
psql -q "$DATABASE_URL" -c "UPDATE school_demo.courses SET title = 'Algebra II (renamed)' WHERE id = (SELECT min(id::text)::uuid FROM school_demo.courses);
  DELETE FROM school_demo.enrollments WHERE id = (SELECT min(id::text)::uuid FROM school_demo.enrollments)"
sleep 2
ferry sync verify --deep

echo "== a job that fails twice, then succeeds"
ferry enqueue fail --args '{"times": 2}' --wait
echo "== a job that fails for good (exit code 1 expected)"
ferry enqueue fail --args '{"permanent": true}' --wait || echo "(exit $?: dead, as planned)"
echo "== a checkpointing long job; worker 1 is killed with SIGKILL while it runs it"
long=$(ferry enqueue sleep --args '{"ms": 6000, "steps": 60}' --key "demo-long-$(date +%s)")
sleep 2
kill -9 "$W1"; W1=""
echo "   worker 1 killed; worker 2 starts and re-queues its jobs after worker.reclaim_after (15 s),"
echo "   then resumes the long job from its checkpoint"
"$FERRY" --config "$config" worker >"$logs/w2.log" 2>&1 & W2=$!
while ! ferry jobs show "$long" | grep 'state     succeeded' >/dev/null; do sleep 1; done
ferry runs show "$long"
echo "== stats"; ferry stats
echo "== schedules"; ferry schedules ls
kill -TERM "$S1"; wait "$S1" && echo "== scheduler stopped cleanly on SIGTERM (exit 0)"; S1=""
kill -TERM "$W2"; wait "$W2" && echo "== worker 2 stopped cleanly on SIGTERM (exit 0)"; W2=""
