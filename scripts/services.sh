#!/usr/bin/env bash
# Local backing services for ferry's tests, all on loopback.
#
#   scripts/services.sh up     [NAME...]   install (if missing) and start services
#   scripts/services.sh down   [NAME...]   stop services this script started (pid files)
#   scripts/services.sh status [NAME...]   one line per service; exit 1 if any is down
#   scripts/services.sh env                print `export VAR=value` lines (eval them)
#   scripts/services.sh browser            install chromium and chromedriver (dashboard test)
#
# NAMEs: postgres redis mongo s3 s3second smtp (none = all).
# Logs, data and pid files live in ${FERRY_SERVICES_DIR:-/tmp/ferry-services}.
# PostgreSQL and Redis are the machine's own servers: `down` leaves them alone.
set -euo pipefail

ALL_SERVICES=(postgres redis mongo s3 s3second smtp)
DIR="${FERRY_SERVICES_DIR:-/tmp/ferry-services}"
HOST=127.0.0.1
WAIT_PID=""

# Fixed local test credentials (not secrets).
S3_ACCESS_KEY=ferry
S3_SECRET_KEY=ferrysecret
PG_USER=postgres
PG_DB=ferry

S3S_FS_VERSION=0.14.1

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

port_of() {
  case "$1" in
    postgres) echo 5432 ;;
    redis) echo 6379 ;;
    mongo) echo 27017 ;;
    s3) echo 9000 ;;
    s3second) echo 9100 ;;
    smtp) echo 2525 ;;
    *) die "unknown service '$1' (known: ${ALL_SERVICES[*]})" ;;
  esac
}

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_port HOST PORT SECONDS [LOGFILE]: wait for a TCP listener, or fail naming the log.
wait_port() {
  local host=$1 port=$2 secs=$3 logfile=${4:-}
  local deadline=$((SECONDS + secs))
  while ! port_open "$host" "$port"; do
    # WAIT_PID (optional): the process we started; stop waiting if it died.
    local why="did not answer within ${secs}s"
    if [[ -n ${WAIT_PID:-} ]] && ! proc_running "$WAIT_PID"; then
      deadline=$SECONDS
      why="not answering: its server (pid $WAIT_PID) exited"
    fi
    if ((SECONDS >= deadline)); then
      if [[ -n $logfile ]]; then
        log "last lines of $logfile:"
        tail -n 20 "$logfile" >&2 || true
        die "$host:$port $why; see $logfile"
      fi
      die "$host:$port $why"
    fi
    sleep 0.1
  done
}

# wait_http URL SECONDS LOGFILE: wait until an HTTP server answers (any status).
wait_http() {
  local url=$1 secs=$2 logfile=$3
  local deadline=$((SECONDS + secs))
  until curl -s -o /dev/null --max-time 2 "$url"; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$logfile" >&2 || true
      die "$url did not answer HTTP within ${secs}s; see $logfile"
    fi
    sleep 0.2
  done
}

pidfile() { echo "$DIR/$1.pid"; }
logfile() { echo "$DIR/$1.log"; }

# proc_running PID: true if PID is a live process (a zombie awaiting its reaper is not).
proc_running() {
  local state=""
  kill -0 "$1" 2>/dev/null || return 1
  read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [[ $state != Z ]]
}

# pid_alive NAME: true if the pid file names a live process.
pid_alive() {
  local f pid
  f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && proc_running "$pid"
}

# already_starting NAME PORT SECS: if our earlier start of NAME is still alive but not
# yet listening, wait for it instead of starting a second copy.
already_starting() {
  pid_alive "$1" || return 1
  WAIT_PID=$(<"$(pidfile "$1")")
  log "$1 already started (pid $(<"$(pidfile "$1")")); waiting for port $2"
  wait_port "$HOST" "$2" "$3" "$(logfile "$1")"
}

# spawn NAME CMD...: start CMD detached (own session, stdio to the log), write pid file.
spawn() {
  local name=$1
  shift
  local lf
  lf=$(logfile "$name")
  mkdir -p "$DIR"
  printf '\n=== %s starting: %s\n' "$(date -u +%FT%TZ)" "$1" >>"$lf"
  # setsid: own session, so the caller's job control/signals don't reach it;
  # stdin/stdout/stderr detached from the caller (CI captures our output).
  (cd "$DIR" && exec setsid nohup "$@" </dev/null >>"$lf" 2>&1) &
  echo $! >"$(pidfile "$name")"
  WAIT_PID=$!
  disown $! 2>/dev/null || true
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PY=""
py() {
  if [[ -z $PY ]]; then
    PY=$(command -v python3) || die "python3 not found"
    # Resolve pyenv shims etc. to the real interpreter, so its bin/ has the console scripts.
    PY=$("$PY" -c 'import sys; print(sys.executable)')
  fi
  echo "$PY"
}
py_bin() { echo "$(dirname "$(py)")/$1"; }

# pip_ensure MODULE SPEC...: pip install SPECs unless MODULE imports.
pip_ensure() {
  local module=$1
  shift
  if ! "$(py)" -c "import $module" 2>/dev/null; then
    log "pip install $*"
    "$(py)" -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" >&2
  fi
}

# ---------------------------------------------------------------- postgres
pg_ready() { pg_isready -q -h "$HOST" -p 5432 2>/dev/null; }

up_postgres() {
  if ! pg_ready; then
    if ! command -v pg_ctlcluster >/dev/null || [[ -z $(ls /etc/postgresql 2>/dev/null) ]]; then
      apt_install postgresql postgresql-client
    fi
    local ver
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $ver"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
      pg_ready || die "pg_ctlcluster $ver main start failed; see /var/log/postgresql/"
    local deadline=$((SECONDS + 30))
    until pg_ready; do
      ((SECONDS < deadline)) || die "PostgreSQL not ready on $HOST:5432 within 30s; see /var/log/postgresql/"
      sleep 0.2
    done
  fi
  # This machine kind configures trust auth on 127.0.0.1, where role `postgres` works.
  local psql=(psql -h "$HOST" -p 5432 -U "$PG_USER" -d postgres -XAtqc)
  if ! "${psql[@]}" 'select 1' >/dev/null 2>&1; then
    die "cannot connect as $PG_USER to $HOST:5432 (is trust auth configured in pg_hba.conf?)"
  fi
  if [[ $("${psql[@]}" "select 1 from pg_database where datname = '$PG_DB'") != 1 ]]; then
    log "createdb $PG_DB"
    createdb -h "$HOST" -p 5432 -U "$PG_USER" "$PG_DB" 2>/dev/null ||
      [[ $("${psql[@]}" "select 1 from pg_database where datname = '$PG_DB'") == 1 ]] ||
      die "createdb $PG_DB failed"
  fi
}

# ---------------------------------------------------------------- redis
redis_ready() { [[ $(redis-cli -h "$HOST" -p 6379 ping 2>/dev/null) == PONG ]]; }

up_redis() {
  command -v redis-cli >/dev/null && redis_ready && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  log "starting redis-server"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
  wait_port "$HOST" 6379 20 /var/log/redis/ci.log
  local deadline=$((SECONDS + 10))
  until redis_ready; do
    ((SECONDS < deadline)) || die "redis on $HOST:6379 does not answer PING; see /var/log/redis/ci.log"
    sleep 0.1
  done
}

# ---------------------------------------------------------------- mongo (SecantusDB)
up_mongo() {
  port_open "$HOST" 27017 && return 0
  already_starting mongo 27017 60 && return 0
  pip_ensure secantus.cli secantusdb
  log "starting secantusd-py on $HOST:27017"
  spawn mongo "$(py_bin secantusd-py)" --host "$HOST" --port 27017 --storage-path :memory:
  wait_port "$HOST" 27017 60 "$(logfile mongo)"
}

# ---------------------------------------------------------------- s3 (s3s-fs)
s3s_fs_bin() {
  local b
  if b=$(command -v s3s-fs 2>/dev/null); then
    echo "$b"
  elif [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs ]]; then
    echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
  else
    return 1
  fi
}

up_s3() {
  port_open "$HOST" 9000 && return 0
  already_starting s3 9000 30 && return 0
  local bin
  if ! bin=$(s3s_fs_bin); then
    command -v cargo >/dev/null || die "cargo not found; cannot install s3s-fs"
    log "cargo install s3s-fs@$S3S_FS_VERSION (takes a few minutes; log: $DIR/s3s-fs-install.log)"
    mkdir -p "$DIR"
    if ! cargo install "s3s-fs@$S3S_FS_VERSION" --features binary --locked >"$DIR/s3s-fs-install.log" 2>&1; then
      tail -n 30 "$DIR/s3s-fs-install.log" >&2
      die "cargo install s3s-fs failed; see $DIR/s3s-fs-install.log"
    fi
    bin=$(s3s_fs_bin) || die "s3s-fs not found after cargo install"
  fi
  mkdir -p "$DIR/s3-data"
  log "starting s3s-fs on $HOST:9000"
  spawn s3 "$bin" --host "$HOST" --port 9000 \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$DIR/s3-data"
  wait_port "$HOST" 9000 30 "$(logfile s3)"
  wait_http "http://$HOST:9000/" 10 "$(logfile s3)"
}

# ---------------------------------------------------------------- s3second (moto)
up_s3second() {
  port_open "$HOST" 9100 && return 0
  already_starting s3second 9100 60 && return 0
  pip_ensure "moto.server, flask, flask_cors" "moto[server]"
  log "starting moto_server on $HOST:9100"
  spawn s3second "$(py_bin moto_server)" -H "$HOST" -p 9100
  wait_port "$HOST" 9100 60 "$(logfile s3second)"
  wait_http "http://$HOST:9100/" 10 "$(logfile s3second)"
}

# ---------------------------------------------------------------- smtp (aiosmtpd)
up_smtp() {
  port_open "$HOST" 2525 && return 0
  already_starting smtp 2525 30 && return 0
  pip_ensure aiosmtpd aiosmtpd
  mkdir -p "$DIR/mail/tmp" "$DIR/mail/new" "$DIR/mail/cur"
  log "starting aiosmtpd on $HOST:2525 (maildir $DIR/mail)"
  # Mailbox handler: every received message lands in the maildir $DIR/mail.
  spawn smtp "$(py)" -m aiosmtpd -n -l "$HOST:2525" -c aiosmtpd.handlers.Mailbox "$DIR/mail"
  wait_port "$HOST" 2525 30 "$(logfile smtp)"
}

# ---------------------------------------------------------------- commands
is_up() {
  case "$1" in
    postgres) pg_ready ;;
    redis) redis_ready ;;
    *) port_open "$HOST" "$(port_of "$1")" ;;
  esac
}

cmd_up() {
  local s
  mkdir -p "$DIR"
  for s in "$@"; do
    "up_$s"
  done
}

cmd_status() {
  local s rc=0 state
  for s in "$@"; do
    if is_up "$s"; then state=up; else state=down; rc=1; fi
    printf '%-9s %5s  %s\n' "$s" "$(port_of "$s")" "$state"
  done
  return $rc
}

stop_one() {
  local name=$1 f pid i
  f=$(pidfile "$name")
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  if [[ $pid =~ ^[0-9]+$ ]] && proc_running "$pid"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      proc_running "$pid" || break
      sleep 0.1
    done
    if proc_running "$pid"; then
      log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

cmd_down() {
  local s
  for s in "$@"; do
    case "$s" in
      postgres | redis) ;; # the machine's own servers: leave them alone
      *) stop_one "$s" ;;
    esac
  done
}

cmd_env() {
  cat <<EOF
export DATABASE_URL=postgres://$PG_USER@$HOST:5432/$PG_DB
export REDIS_URL=redis://$HOST:6379
export MONGODB_URI=mongodb://$HOST:27017
export S3_ENDPOINT=http://$HOST:9000
export S3_SECOND_ENDPOINT=http://$HOST:9100
export S3_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export SMTP_URL=smtp://$HOST:2525
export SMTP_MAILDIR=$DIR/mail
EOF
}

# The dashboard test drives Debian's chromium through chromedriver; not a service.
cmd_browser() {
  command -v chromedriver >/dev/null && command -v chromium >/dev/null && return
  apt_install chromium chromium-driver
}

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  (($# >= 1)) || usage
  local cmd=$1
  shift
  local names=("$@") s
  ((${#names[@]})) || names=("${ALL_SERVICES[@]}")
  [[ $cmd == browser ]] && { cmd_browser; return; }
  for s in "${names[@]}"; do port_of "$s" >/dev/null; done
  case "$cmd" in
    up) cmd_up "${names[@]}" ;;
    down) cmd_down "${names[@]}" ;;
    status) cmd_status "${names[@]}" ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
