#!/usr/bin/env bash
# Sets up local services and runs ferry end to end: migrate, start two workers, enqueue jobs of
# every diagnostic kind (one that retries, one that dies, a checkpointing long job), kill one
# worker mid-run to show recovery, then print what happened.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh up postgres redis
eval "$(bash scripts/services.sh env)"
export FERRY_REDIS_PREFIX="ferry-demo" FERRY_SCHEMA="ferry_demo"
cargo build --quiet --release -p ferry-cli
FERRY=./target/release/ferry
ferry() { "$FERRY" "$@"; }
logs=$(mktemp -d)
cleanup() { kill "${W1:-}" "${W2:-}" 2>/dev/null || true; }
trap cleanup EXIT

echo "== migrate"; ferry migrate
echo "== worker 1 (logs in $logs)"
"$FERRY" worker >"$logs/w1.log" 2>&1 & W1=$!
sleep 1

echo "== 10000 no-op jobs in bulk"
for i in $(seq 1 10000); do echo '{"kind":"noop"}'; done | ferry enqueue --file -
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
"$FERRY" worker >"$logs/w2.log" 2>&1 & W2=$!
while ! ferry jobs show "$long" | grep -q 'state     succeeded'; do sleep 1; done
ferry runs show "$long"
echo "== stats"; ferry stats
echo "== dead jobs"; ferry jobs ls --state dead --limit 5
kill -TERM "$W2"; wait "$W2" && echo "== worker 2 stopped cleanly on SIGTERM (exit 0)"; W2=""
