#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a cluster: docker-compose.yml
# through Debian's docker-compose (`config -q`, which parses and interpolates the file), then
# the services, healthchecks, conditions, secrets, Dockerfile and Kubernetes manifests
# (deploy/kubernetes/*.yaml) through scripts/check_deploy.py. Prints PASS or FAIL; exits 1 on
# any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'check-deploy: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

as_root() {
  if [[ $(id -u) == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    fail "need root to run: $*"
  fi
}

# Debian's docker-compose 1.29 (Python) validates a file with no engine running; the v2
# plugin is not packaged in Debian 12. Recommends would pull in the Docker engine itself.
if ! command -v docker-compose >/dev/null; then
  log "installing Debian's docker-compose"
  if ! apt-cache policy docker-compose 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    as_root apt-get update -qq
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker-compose >/dev/null
fi

# The example env file stands in for .env, and an empty one proves no secret has a default.
empty_env=$(mktemp)
trap 'rm -f "$empty_env"' EXIT
compose() { env -i PATH="$PATH" HOME="${HOME:-/root}" docker-compose --project-directory . "$@"; }

compose --env-file .env.example config -q || fail "docker-compose config -q rejects docker-compose.yml"
log "docker-compose config -q: ok ($(docker-compose version --short))"
if out=$(compose --env-file "$empty_env" config -q 2>&1); then
  fail "docker-compose.yml is valid with no .env at all: some secret has a default"
fi
grep -q 'set .* in .env' <<<"$out" || fail "an unset secret gives an unclear error: $out"
log "no secret has a default: ok"

# PyYAML: the interpreter's own, or Debian's (a dependency of docker-compose).
python=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then
    python=$p
    break
  fi
done
[[ -n $python ]] || fail "no python3 with PyYAML (apt-get install python3-yaml)"

resolved=$(mktemp)
trap 'rm -f "$empty_env" "$resolved"' EXIT
compose --env-file .env.example config >"$resolved"
"$python" scripts/check_deploy.py --resolved "$resolved"
