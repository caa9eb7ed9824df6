#!/usr/bin/env bash
# Sets up local services and runs ferry end to end on local defaults:
#  1. sync: seeds a school database (the seeds' schema), mirrors it into MongoDB with a
#     chunked full sync, verifies every document, installs change capture, changes rows and
#     shows the mirror following (the scheduler relays the captured changes);
#  2. the queue: a job that retries then succeeds, one that dies, and a checkpointing long job
#     whose worker is killed with SIGKILL and which a second worker resumes; flow control: a
#     paused queue, a high-priority job, two tenants sharing a worker;
#  3. the scheduler: a schedule firing every 5 seconds, in 5-field crontab form too;
#  4. backup: the database into the local S3 stand-in (s3s-fs), verified by a test restore;
#  5. files: a bucket of files migrated from s3s-fs to the second S3 stand-in (moto), with the
#     URLs in a table rewritten to the new public URL;
#  6. notify: a templated email to the local SMTP sink (aiosmtpd, maildir);
#  7. the API and dashboard: `ferry serve`, /readyz naming each dependency, and the dashboard
#     URL with the token to sign in with.
# FERRY_DEMO_PROFILE=debug uses a debug build (default release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh up postgres redis mongo s3 s3second smtp
eval "$(bash scripts/services.sh env)"
export FERRY_REDIS_PREFIX="ferry-demo" FERRY_SCHEMA="ferry_demo" MONGODB_DATABASE="ferry_demo"
profile=${FERRY_DEMO_PROFILE:-release}
if [[ $profile == release ]]; then
  cargo build --quiet --release -p ferry-cli
else
  cargo build --quiet -p ferry-cli
fi
FERRY=./target/$profile/ferry
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
[[schedule]]
name = "nightly-backup"
cron = "0 2 * * *"
kind = "backup.run"

[backup]
databases = ["ferry_demo_app"]
target = "backups"
[stores.backups]
url = "s3://ferry-demo-backups/nightly"
[stores.uploads]
url = "s3://ferry-demo-uploads/media"
public_url = "http://127.0.0.1:9000/ferry-demo-uploads/media"
[stores.archive]
url = "s3://ferry-demo-archive/media"
endpoint = "http://127.0.0.1:9100"
public_url = "https://cdn.example.com/media"

[notify]
from = "ferry demo <demo@ferry.local>"
[notify.templates.welcome]
subject = "Welcome to {{ school }}, {{ name }}"
text = "Hello {{ name }}, your {{ school }} account is ready."
TOML
cleanup() { kill "${W1:-}" "${W2:-}" "${W3:-}" "${S1:-}" "${API:-}" 2>/dev/null || true; }
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
echo "== flow control: pause the default queue, enqueue 600 jobs of tenant acme, then 3 of tenant"
echo "   zenith and one high-priority job; nothing starts until resume; zenith is not stuck behind acme"
ferry queues pause default
seq 600 | sed 's/.*/{"kind":"sleep","args":{"ms":200},"tenant":"acme"}/' | ferry enqueue --file -
zenith=$(for i in 1 2 3; do ferry enqueue sleep --args '{"ms": 200}' --tenant zenith; done)
urgent=$(ferry enqueue noop --priority high)
sleep 1; ferry stats | tail -n 6
ferry queues resume default
for id in $urgent $zenith; do
  while ! ferry jobs show "$id" | grep 'state     succeeded' >/dev/null; do sleep 0.1; done
done
echo "   the high-priority job and zenith's 3 jobs are done; acme's are still going:"
ferry stats | tail -n 5
echo "== stats"; ferry stats
echo "== schedules"; ferry schedules ls
kill -TERM "$S1"; wait "$S1" && echo "== scheduler stopped cleanly on SIGTERM (exit 0)"; S1=""
kill -TERM "$W2"; wait "$W2" && echo "== worker 2 stopped cleanly on SIGTERM (exit 0)"; W2=""

# S3 requests for the demo's setup: curl signs them (SigV4) with the stand-ins' keys.
s3() {
  curl -sSf --aws-sigv4 "aws:amz:$S3_REGION:s3" -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
for bucket in "$S3_ENDPOINT/ferry-demo-backups" "$S3_ENDPOINT/ferry-demo-uploads" "$S3_SECOND_ENDPOINT/ferry-demo-archive"; do
  s3 -o /dev/null -X PUT "$bucket" 2>/dev/null || true  # already there on a second run
done
"$FERRY" --config "$config" worker >"$logs/w3.log" 2>&1 & W3=$!

echo "== backup: database ferry_demo_app into s3://ferry-demo-backups (s3s-fs), then a test restore"
psql -qtA "$DATABASE_URL" -c "SELECT 1 FROM pg_database WHERE datname = 'ferry_demo_app'" | grep -q 1 ||
  psql -q "$DATABASE_URL" -c 'CREATE DATABASE ferry_demo_app'
app_url="${DATABASE_URL%/*}/ferry_demo_app"
psql -q "$app_url" -c 'SET client_min_messages = warning; DROP SCHEMA IF EXISTS school CASCADE; CREATE SCHEMA school'
{ echo 'SET search_path = school;'; cat tests/fixtures/school.sql; } | psql -q -v ON_ERROR_STOP=1 "$app_url"
ferry backup run --wait
backup=$(ferry --json backup list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
ferry backup verify "$backup"
ferry backup list

echo "== files: 5 objects from s3s-fs to moto, URLs in school_demo.attachments rewritten"
psql -q "$DATABASE_URL" -c "CREATE TABLE IF NOT EXISTS school_demo.attachments (id serial PRIMARY KEY, url text NOT NULL); TRUNCATE school_demo.attachments"
for i in 1 2 3 4 5; do
  printf 'lesson notes %s\n' "$i" >"$logs/notes-$i.txt"
  s3 -o /dev/null -T "$logs/notes-$i.txt" "$S3_ENDPOINT/ferry-demo-uploads/media/notes-$i.txt"
  psql -q "$DATABASE_URL" -c "INSERT INTO school_demo.attachments (url) VALUES ('http://127.0.0.1:9000/ferry-demo-uploads/media/notes-$i.txt')"
done
ferry files migrate --from uploads --to archive --rewrite school_demo.attachments.url --wait
psql "$DATABASE_URL" -c "SELECT url FROM school_demo.attachments ORDER BY id LIMIT 2"
s3 "$S3_SECOND_ENDPOINT/ferry-demo-archive/media/notes-1.txt"

echo "== notify: a templated email to the local SMTP sink"
before=$(ls "$SMTP_MAILDIR/new" | wc -l)
ferry notify send --to ada@school.example --template welcome \
  --data '{"name": "Ada", "school": "Ferry High"}' --key "demo-welcome-$(date +%s)" --wait
after=$(ls "$SMTP_MAILDIR/new" | wc -l)
newest=$(ls -t "$SMTP_MAILDIR/new" | head -1)
echo "   $((after - before)) new message in $SMTP_MAILDIR/new:"
grep -E '^(Subject|To):' "$SMTP_MAILDIR/new/$newest" | sed 's/^/     /'

echo "== the API and the dashboard"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export FERRY_ADMIN_TOKEN=${FERRY_ADMIN_TOKEN:-demo-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')}
# Plain http on loopback: the session cookie goes without `Secure` here only.
FERRY_API__INSECURE_COOKIES=true "$FERRY" --config "$config" serve --listen "127.0.0.1:$port" >"$logs/api.log" 2>&1 & API=$!
until FERRY_HEALTH_PORT=$port ferry healthcheck api 2>/dev/null; do sleep 0.2; done
curl -s "http://127.0.0.1:$port/readyz"; echo
echo "   dashboard: http://127.0.0.1:$port/dashboard  (sign in with the admin token: $FERRY_ADMIN_TOKEN)"
kill -TERM "$API"; wait "$API" && echo "== API stopped cleanly on SIGTERM (exit 0)"; API=""
kill -TERM "$W3"; wait "$W3"; W3=""
echo "== demo done: sync, queue, scheduler, backup, files, notify and the API all ran"
