#!/usr/bin/env bash
# A throwaway Redis Cluster on loopback: 3 primaries + 3 replicas, for tests and benchmarks.
#
#   scripts/redis-cluster.sh up   DIR BASE_PORT   start nodes BASE_PORT..BASE_PORT+5, create
#                                                 the cluster, print its REDIS_URL (seed list)
#   scripts/redis-cluster.sh down DIR             stop the nodes started in DIR, delete DIR
#
# Nodes keep nothing on disk past `down` (no RDB, no AOF); cluster-node-timeout is 2 s so a
# killed primary's replica takes over within a few seconds. Needs redis-server and redis-cli
# (services.sh up redis installs them).
set -euo pipefail

die() { printf 'redis-cluster: error: %s\n' "$*" >&2; exit 1; }

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || die "usage: $0 up DIR BASE_PORT | down DIR"

case "$cmd" in
up)
  base=${3:-}
  [[ $base =~ ^[0-9]+$ ]] && ((base > 1024 && base + 10005 < 65536)) ||
    die "BASE_PORT must be a number from 1025 to 55530 (cluster bus ports are +10000)"
  command -v redis-server >/dev/null || bash "$(dirname "$0")/services.sh" up redis
  mkdir -p "$dir"
  nodes=()
  for i in 0 1 2 3 4 5; do
    port=$((base + i))
    node="$dir/$port"
    mkdir -p "$node"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$node/nodes.conf" --cluster-node-timeout 2000 \
      --cluster-replica-validity-factor 0 \
      --save "" --appendonly no --dir "$node" --daemonize yes \
      --pidfile "$node/pid" --logfile "$node/log" >/dev/null
    nodes+=("127.0.0.1:$port")
  done
  for i in 0 1 2 3 4 5; do
    port=$((base + i))
    for _ in $(seq 100); do
      [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && break
      sleep 0.1
    done
    [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] || die "node $port did not start; see $dir/$port/log"
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 ||
    die "cluster create failed; see $dir/create.log"
  for _ in $(seq 200); do
    ok=1
    for i in 0 1 2 3 4 5; do
      redis-cli -p $((base + i)) cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
    done
    ((ok)) && break
    sleep 0.1
  done
  ((ok)) || die "cluster did not reach state ok; see $dir/*/log"
  # A replica that never finished its first sync cannot take over; wait until each has.
  for _ in $(seq 300); do
    up=0
    for i in 0 1 2 3 4 5; do
      redis-cli -p $((base + i)) info replication 2>/dev/null | grep -q 'master_link_status:up' && up=$((up + 1))
    done
    ((up == 3)) && break
    sleep 0.1
  done
  ((up == 3)) || die "replicas did not finish their first sync; see $dir/*/log"
  urls=()
  for i in 0 1 2; do urls+=("redis://127.0.0.1:$((base + i))"); done
  (IFS=,; echo "${urls[*]}")
  ;;
down)
  [[ -d $dir ]] || exit 0
  for pidfile in "$dir"/*/pid; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pidfile in "$dir"/*/pid; do
    [[ -f $pidfile ]] || continue
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
  ;;
*) die "unknown command '$cmd' (up, down)" ;;
esac
