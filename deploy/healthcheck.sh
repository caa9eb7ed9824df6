#!/usr/bin/env bash
# ferry-healthcheck [ROLE]: is this container's ferry healthy, as the rest of ferry sees it?
# ROLE (or FERRY_ROLE): api, worker or scheduler. Exit 0 healthy, 1 unhealthy, 2 misused.
#
#   api        GET /healthz on 127.0.0.1:${FERRY_HEALTH_PORT:-8080} answers 200.
#   worker     a worker of this host heartbeated into the queue's `workers` set within
#              FERRY_HEALTH_MAX_AGE_MS (default 15000, worker.reclaim_after): the same signal
#              other workers use to decide it is dead and take over its jobs. Reads
#              REDIS_URL, FERRY_REDIS_PREFIX (default ferry) and FERRY_HEALTH_QUEUE (default
#              `default`; set it to a queue the worker consumes when it runs with --queues).
#   scheduler  `ferry schedules ls` succeeds: the configuration loads and Postgres answers.
set -uo pipefail

role=${1:-${FERRY_ROLE:-}}
unhealthy() {
  printf 'ferry-healthcheck: %s: %s\n' "$role" "$*" >&2
  exit 1
}

case $role in
  api)
    port=${FERRY_HEALTH_PORT:-8080}
    # bash's /dev/tcp: the image needs no HTTP client.
    { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || unhealthy "nothing listens on port $port"
    request=$'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n'
    printf '%s' "$request" >&3
    status=""
    read -r -t 5 _ status _ <&3
    [[ $status == 200 ]] || unhealthy "GET /healthz answered ${status:-nothing} (want 200)"
    ;;
  worker)
    [[ -n ${REDIS_URL:-} ]] || unhealthy "REDIS_URL is not set"
    key="${FERRY_REDIS_PREFIX:-ferry}:{${FERRY_HEALTH_QUEUE:-default}}:workers"
    max_age_ms=${FERRY_HEALTH_MAX_AGE_MS:-15000}
    host=$(cat /proc/sys/kernel/hostname)
    cli() { redis-cli -u "$REDIS_URL" --no-auth-warning "$@"; }
    # Redis's clock, not ours: heartbeats are stamped by the worker, compared here by Redis time.
    time=$(cli TIME) || unhealthy "Redis does not answer"
    read -r -d '' secs micros <<<"$time"
    since=$((secs * 1000 + micros / 1000 - max_age_ms))
    members=$(cli ZRANGEBYSCORE "$key" "$since" +inf) || unhealthy "cannot read $key"
    # Worker ids are HOST-PID-SUFFIX (worker/src/identity.rs).
    grep -q "^$host-" <<<"$members" ||
      unhealthy "no heartbeat from a worker on $host in $key within ${max_age_ms} ms"
    ;;
  scheduler)
    ferry schedules ls >/dev/null || unhealthy "ferry schedules ls failed"
    ;;
  *)
    echo "usage: ferry-healthcheck api|worker|scheduler (or set FERRY_ROLE)" >&2
    exit 2
    ;;
esac
