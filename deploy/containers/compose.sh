#!/usr/bin/env bash
# The whole docker-compose.yml stack under podman (Debian's podman-compose), with the local images.
#
#   deploy/containers/compose.sh up        # build what is missing, start in order, wait until healthy
#   deploy/containers/compose.sh down [-v] # stop and remove the containers and the network (-v: volumes too)
#   deploy/containers/compose.sh status
#
# podman-compose 1.0 ignores depends_on conditions, quotes a `test: [CMD, ...]` healthcheck into a
# broken shell line, and podman runs healthchecks only from systemd timers, which this machine lacks;
# so `up` starts the stack in docker-compose.yml's order itself and runs each service's healthcheck
# command, read from docker-compose.yml, with `podman exec` until it passes: the broker and the
# database, then the topic and migration jobs to completion, then the simulators, then the services.
# Networking: the compose project's own podman network (containers find each other by service name);
# the host reaches the published ports on localhost. See docs/adr/ "Containers on this machine".
# Env: the MESH_*_PORT variables of docker-compose.yml; MESH_COMPOSE_TIMEOUT (180 s per stage).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROJECT=contract-mesh
TIMEOUT="${MESH_COMPOSE_TIMEOUT:-180}"
compose() { podman-compose --no-ansi -p "$PROJECT" -f "$REPO/docker-compose.yml" "$@"; }
container() { echo "${PROJECT}_$1_1"; }

SIMULATORS=(smtp-catcher crm-simulator erp-simulator)
SERVICES=(contract-registry obligation-engine invoice-validator renewal-sync notifier)

start() {  # services...: created and started without their dependencies (this script orders them)
  compose up -d --no-build --no-deps "$@" >"$CACHE/compose-up.log" 2>&1 \
    || { tail -30 "$CACHE/compose-up.log" >&2; log "podman-compose up $* failed"; exit 1; }
}

# The healthcheck command of a service in docker-compose.yml, one argument a line (YAML anchors resolved).
healthcheck_of() {
  python3 - "$REPO/docker-compose.yml" "$1" <<'PY'
import sys, yaml
test = yaml.safe_load(open(sys.argv[1]))["services"][sys.argv[2]]["healthcheck"]["test"]
if isinstance(test, str):
    test = ["CMD-SHELL", test]
print("\n".join(test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]))
PY
}

healthy() {
  local -a check
  mapfile -t check < <(healthcheck_of "$1")
  timeout 10 podman exec "$(container "$1")" "${check[@]}" >/dev/null 2>&1
}

wait_healthy() {  # services...
  local deadline=$((SECONDS + TIMEOUT)) name pending
  while :; do
    pending=()
    for name in "$@"; do
      healthy "$name" || pending+=("$name")
    done
    ((${#pending[@]} == 0)) && { log "healthy: $*"; return 0; }
    if ((SECONDS >= deadline)); then
      for name in "${pending[@]}"; do
        log "$name not healthy within ${TIMEOUT}s; its last log lines:"
        podman logs --tail 30 "$(container "$name")" >&2 || true
      done
      exit 1
    fi
    sleep 1  # poll interval
  done
}

wait_completed() {  # jobs...: each must exit 0
  local name code
  for name in "$@"; do
    code="$(timeout "$TIMEOUT" podman wait "$(container "$name")")" || code=timeout
    if [[ "$code" != 0 ]]; then
      log "$name ended with $code; its log:"
      podman logs --tail 40 "$(container "$name")" >&2 || true
      exit 1
    fi
  done
  log "completed: $*"
}

up() {
  local started=$SECONDS line
  while IFS= read -r line; do export "${line?}"; done < <(bash "$REPO/deploy/containers/stack-images.sh")
  # Fresh containers every time, so a rebuilt image or a changed setting applies (podman-compose 1.0's
  # --force-recreate would stop the whole project at every stage); the volumes stay.
  if [[ -n "$(podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT")" ]]; then down; fi
  start kafka postgres otel-collector
  wait_healthy kafka postgres
  start topics-init migrate
  wait_completed topics-init migrate
  start "${SIMULATORS[@]}"
  wait_healthy "${SIMULATORS[@]}"
  start "${SERVICES[@]}"
  wait_healthy "${SERVICES[@]}"
  log "stack up in $((SECONDS - started)) s (host ports: Kafka ${MESH_KAFKA_PORT:-29092}, registry ${MESH_REGISTRY_PORT:-8081})"
}

down() {
  install_packages
  compose down "$@" >"$CACHE/compose-down.log" 2>&1 || { tail -30 "$CACHE/compose-down.log" >&2; exit 1; }
  # podman-compose 1.0 leaves the project's network behind.
  if [[ "${1:-}" == -v ]]; then podman network rm --force "${PROJECT}_default" >/dev/null 2>&1 || true; fi
  log "stack removed"
}

case "${1:-}" in
  up) install_packages; up ;;
  down) shift; down "$@" ;;
  status) podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}\t{{.Status}}' ;;
  *) echo "usage: $0 up|down [-v]|status" >&2; exit 2 ;;
esac
