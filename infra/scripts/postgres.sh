#!/usr/bin/env bash
# Local PostgreSQL cluster for development and integration tests.
#
#   infra/scripts/postgres.sh install|start|stop|status
#
# Env: PG_PORT (5432), PG_DIR (<repo>/.run/postgres), PG_DATABASE (contracts).
# Installs Debian's `postgresql` only when no server binaries are found.
# Auth is `trust` on loopback only (listen 127.0.0.1, unix socket inside PG_DIR):
# this cluster is a throwaway for one machine, never a deployment.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PG_PORT="${PG_PORT:-5432}"
PG_DIR="${PG_DIR:-$REPO/.run/postgres}"
PG_DATABASE="${PG_DATABASE:-contracts}"
DATA="$PG_DIR/data"
SOCK="$PG_DIR/socket"
LOG_FILE="$PG_DIR/postgres.log"

log() { echo "postgres: $*" >&2; }

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" && -x "$d/postgres" && -x "$d/pg_ctl" ]]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

install() {
  if find_bindir >/dev/null; then return 0; fi
  [[ "$(id -u)" == 0 ]] || { log "server binaries missing and not root: apt-get install postgresql yourself"; exit 1; }
  log "installing Debian postgresql (apt-get)"
  # We run our own clusters; stop the package from creating (and starting)
  # its default cluster on 5432.
  mkdir -p /etc/postgresql-common
  [[ -f /etc/postgresql-common/createcluster.conf ]] \
    || echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql >/dev/null
  find_bindir >/dev/null || { log "install finished but no initdb found"; exit 1; }
}

# PostgreSQL refuses to run as root: run its tools as the `postgres` user then.
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

is_running() { [[ -f "$DATA/postmaster.pid" ]] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

psql_pg() { as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PG_PORT" -U postgres -d postgres "$@"; }

init_cluster() {
  mkdir -p "$PG_DIR"
  if [[ "$(id -u)" == 0 ]]; then
    chown postgres:postgres "$PG_DIR"
    runuser -u postgres -- test -x "$PG_DIR" \
      || { log "user postgres cannot reach $PG_DIR (check parent directory permissions)"; exit 1; }
  fi
  [[ -f "$DATA/PG_VERSION" ]] && return 0
  log "initdb $DATA"
  as_pg mkdir -p "$DATA" "$SOCK"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
  # Durability is pointless for a scratch cluster; these make tests faster.
  as_pg tee -a "$DATA/postgresql.conf" >/dev/null <<'CONF'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
}

start() {
  install
  BIN="$(find_bindir)"
  init_cluster
  if is_running; then
    log "already running ($DATA)"
    return 0
  fi
  as_pg mkdir -p "$SOCK"
  log "starting on 127.0.0.1:$PG_PORT, log $LOG_FILE"
  as_pg touch "$LOG_FILE"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG_FILE" -w -t 60 start \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$SOCK" >/dev/null \
    || { tail -n 30 "$LOG_FILE" >&2; exit 1; }
  local deadline=$((SECONDS + 60))
  until "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
    ((SECONDS < deadline)) || { log "not ready after 60s"; tail -n 30 "$LOG_FILE" >&2; exit 1; }
    sleep 0.2 # poll interval
  done
  provision_db
  log "ready: postgresql://mesh:mesh@127.0.0.1:$PG_PORT/$PG_DATABASE"
}

provision_db() {
  if [[ "$(psql_pg -tAc "select 1 from pg_roles where rolname = 'mesh'")" != 1 ]]; then
    psql_pg -c "create role mesh login password 'mesh' createdb"
  fi
  if [[ "$(psql_pg -tAc "select 1 from pg_database where datname = '$PG_DATABASE'")" != 1 ]]; then
    psql_pg -c "create database \"$PG_DATABASE\" owner mesh"
  fi
}

stop() {
  BIN="$(find_bindir)" || { log "not installed"; return 0; }
  if ! is_running; then
    log "not running"
    return 0
  fi
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  log "stopped"
}

status() {
  BIN="$(find_bindir)" || { echo "postgres: not installed"; return 1; }
  if is_running && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    echo "postgres: running on 127.0.0.1:$PG_PORT ($DATA)"
  else
    echo "postgres: not running"
    return 1
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
