#!/usr/bin/env bash
# The five mesh services and the three simulators as local background processes.
#
#   infra/scripts/services.sh start|stop|status|ports [name...]   (no names: all of them)
#
# One process group, pid file and log file per process: pids in $MESH_RUN_DIR/pids,
# logs in $MESH_RUN_DIR/logs/<name>.log. A service whose package is not installed in
# the venv (or has no entry point module yet) is skipped with a note, not an error.
# `start` while a process is already running says so and starts no twin; `stop` sends
# SIGTERM to each process group, waits, then SIGKILLs what is left, so nothing stays.
#
# Supervision, as Kubernetes does it: each process runs under a small supervisor (the group
# leader, whose pid is in <name>.pid; the process's own pid is in <name>.child). Once the process
# has answered /healthz, an exit or a crash (SIGKILL, OOM) restarts it after a backoff that
# doubles from MESH_RESTART_DELAY (1 s) up to MESH_RESTART_MAX_DELAY (60 s) and starts again from
# the bottom after MESH_RESTART_RESET (120 s) of uptime; each restart is logged in its log file.
# A process that dies before it was ever healthy is not restarted: `start` reports it. `stop`
# stops the supervisor with the process, so nothing comes back after it. MESH_RESTART=never
# turns restarts off.
#
# Fixed local ports (HTTP; override with <NAME>_PORT, e.g. CONTRACT_REGISTRY_PORT=9181):
#   contract-registry 8081   obligation-engine 8082   invoice-validator 8083
#   renewal-sync      8084   notifier          8085
#   erp-simulator     8091   crm-simulator     8092   smtp-catcher 8093 (SMTP on 1025)
# They point at the `make up` stack: Kafka 127.0.0.1:$KAFKA_PORT (9092) and PostgreSQL
# 127.0.0.1:$PG_PORT (5432), database contracts, user mesh. MESH_CLOCK=topic: every
# process follows ClockAdvanced events on mesh.clock.v1, so the demo moves time.
# Spans go, one JSON object a line, to $MESH_RUN_DIR/traces/<name>.jsonl (MESH_OTEL_EXPORTER=console
# with MESH_OTEL_FILE; set MESH_OTEL_EXPORTER=otlp and MESH_OTEL_ENDPOINT for a collector instead).
#
# Env: MESH_RUN_DIR (<repo>/.run), MESH_SERVICES (names to manage, default all),
#      MESH_START_TIMEOUT (60 s to answer /healthz), MESH_STOP_TIMEOUT (20 s before SIGKILL),
#      PYTHON_BIN_DIR (<repo>/.venv/bin), MESH_RESTART (always|never), MESH_RESTART_DELAY,
#      MESH_RESTART_MAX_DELAY, MESH_RESTART_RESET (seconds).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_DIR="${MESH_RUN_DIR:-$REPO/.run}"
PID_DIR="$RUN_DIR/pids"
LOG_DIR="$RUN_DIR/logs"
BIN="${PYTHON_BIN_DIR:-$REPO/.venv/bin}"
START_TIMEOUT="${MESH_START_TIMEOUT:-60}"
STOP_TIMEOUT="${MESH_STOP_TIMEOUT:-20}"
RESTART="${MESH_RESTART:-always}"
RESTART_DELAY="${MESH_RESTART_DELAY:-1}"
RESTART_MAX_DELAY="${MESH_RESTART_MAX_DELAY:-60}"
RESTART_RESET="${MESH_RESTART_RESET:-120}"

ALL=(contract-registry obligation-engine invoice-validator renewal-sync notifier
  erp-simulator crm-simulator smtp-catcher)

KAFKA="127.0.0.1:${KAFKA_PORT:-9092}"
DB_URL="postgresql+psycopg://mesh:mesh@127.0.0.1:${PG_PORT:-5432}/${PG_DATABASE:-contracts}"
AUTH_SECRET="${AUTH_HS256_SECRET:-local-development-secret-change-me-please}"
# Shared secrets between a service and the simulator on the other end of its webhook.
AP_WEBHOOK_SECRET="${MESH_AP_WEBHOOK_SECRET:-local-ap-webhook-secret}"
CRM_WEBHOOK_SECRET="${MESH_CRM_WEBHOOK_SECRET:-local-crm-webhook-secret}"
ERP_TOKEN="${MESH_ERP_TOKEN:-local-erp-token}"
CRM_CLIENT_ID="${MESH_CRM_CLIENT_ID:-contract-mesh}"
CRM_CLIENT_SECRET="${MESH_CRM_CLIENT_SECRET:-local-crm-client-secret}"

log() { echo "services: $*" >&2; }

port_of() {
  local var
  var="$(echo "$1" | tr 'a-z-' 'A-Z_')_PORT"
  if [[ -n "${!var:-}" ]]; then echo "${!var}"; return; fi
  case "$1" in
    contract-registry) echo 8081 ;; obligation-engine) echo 8082 ;; invoice-validator) echo 8083 ;;
    renewal-sync) echo 8084 ;; notifier) echo 8085 ;;
    erp-simulator) echo 8091 ;; crm-simulator) echo 8092 ;; smtp-catcher) echo 8093 ;;
    *) log "unknown process $1"; return 1 ;;
  esac
}

SMTP_PORT="${SMTP_CATCHER_SMTP_PORT:-1025}"
url_of() { echo "http://127.0.0.1:$(port_of "$1")"; }

command_of() {
  case "$1" in
    erp-simulator) echo "$BIN/mesh-sim erp" ;;
    crm-simulator) echo "$BIN/mesh-sim crm" ;;
    smtp-catcher) echo "$BIN/mesh-sim smtp" ;;
    *) echo "$BIN/$1" ;;
  esac
}

# The environment of one process: the shared settings, then what it alone needs.
env_of() {
  local name="$1" port
  port="$(port_of "$name")"
  cat <<ENV
KAFKA_BOOTSTRAP_SERVERS=$KAFKA
KAFKA_CLIENT_ID=$name
DATABASE_URL=$DB_URL
AUTH_HS256_SECRET=$AUTH_SECRET
MESH_CLOCK=${MESH_CLOCK:-topic}
MESH_HTTP_HOST=127.0.0.1
MESH_HTTP_PORT=$port
MESH_PUBLIC_BASE_URL=http://127.0.0.1:$port
MESH_OTEL_EXPORTER=${MESH_OTEL_EXPORTER:-console}
MESH_OTEL_FILE=${MESH_OTEL_FILE:-$RUN_DIR/traces/$name.jsonl}
MESH_LOG_LEVEL=${MESH_LOG_LEVEL:-INFO}
PYTHONUNBUFFERED=1
ENV
  case "$name" in
    contract-registry)
      echo "REGISTRY_MIGRATE_ON_START=true" ;;
    obligation-engine)
      echo "OBLIGATION_ERP_BASE_URL=$(url_of erp-simulator)"
      echo "OBLIGATION_ERP_TOKEN=$ERP_TOKEN"
      echo "OBLIGATION_DATA_DIR=$RUN_DIR/data/obligation-engine" ;;
    invoice-validator)
      echo "VALIDATOR_AP_WEBHOOK_URL=$(url_of erp-simulator)/ap/verdicts"
      echo "VALIDATOR_AP_WEBHOOK_SECRET=$AP_WEBHOOK_SECRET"
      echo "VALIDATOR_DATA_DIR=$RUN_DIR/data/invoice-validator"
      # Local runs: a red alert for any rejected invoice above 500 (the shipped default is 10,000).
      echo "VALIDATOR_ALERT_THRESHOLD=${VALIDATOR_ALERT_THRESHOLD:-500}" ;;
    renewal-sync)
      echo "RENEWAL_CRM=salesforce"
      echo "RENEWAL_CRM_BASE_URL=$(url_of crm-simulator)"
      echo "RENEWAL_SALESFORCE_CLIENT_ID=$CRM_CLIENT_ID"
      echo "RENEWAL_SALESFORCE_CLIENT_SECRET=$CRM_CLIENT_SECRET"
      # One webhook secret per tenant: the simulated CRM is the demo tenant's.
      echo "RENEWAL_WEBHOOK_SECRETS={\"demo\":\"$CRM_WEBHOOK_SECRET\"}" ;;
    notifier)
      echo "NOTIFIER_SMTP_HOST=127.0.0.1"
      echo "NOTIFIER_SMTP_PORT=$SMTP_PORT"
      echo "NOTIFIER_SMTP_STARTTLS=false" ;;
    erp-simulator)
      echo "ERP_SIM_TOKEN=$ERP_TOKEN"
      echo "ERP_SIM_WEBHOOK_SECRET=$AP_WEBHOOK_SECRET"
      echo "ERP_SIM_VALIDATOR_URL=$(url_of invoice-validator)" ;;
    crm-simulator)
      echo "CRM_SIM_CLIENT_ID=$CRM_CLIENT_ID"
      echo "CRM_SIM_CLIENT_SECRET=$CRM_CLIENT_SECRET"
      echo "CRM_SIM_WEBHOOK_SECRET=$CRM_WEBHOOK_SECRET"
      echo "CRM_SIM_DECISION_URL=$(url_of renewal-sync)/v1/crm/decisions" ;;
    smtp-catcher)
      echo "MESH_SMTP_HOST=127.0.0.1"
      echo "MESH_SMTP_PORT=$SMTP_PORT" ;;
  esac
}

# Why a process cannot be started from this venv, or nothing when it can: the console
# script must exist and the module its entry point names must be importable.
missing_reason() {
  local name="$1" script
  script="$(command_of "$name")"
  script="${script%% *}"
  [[ -x "$script" ]] || { echo "no $script (package not installed: run make venv)"; return; }
  "$BIN/python" - "$(basename "$script")" <<'PY' 2>/dev/null || echo "entry point of $(basename "$script") not importable yet"
import importlib.metadata as md, importlib.util, sys
eps = [e for e in md.entry_points(group="console_scripts") if e.name == sys.argv[1]]
if not eps:
    sys.exit(1)
module = eps[0].value.split(":", 1)[0]
try:
    found = importlib.util.find_spec(module) is not None
except ImportError:
    found = False
sys.exit(0 if found else 1)
PY
}

# Start time of a process (clock ticks since boot, /proc/<pid>/stat field 22): with the pid it
# names one process, so a pid the kernel has since reused is never taken for ours.
start_time() { awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }

running_pid() {
  local file="$PID_DIR/$1.pid" pid started
  [[ -f "$file" ]] || return 1
  read -r pid started <"$file" || true
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -z "${started:-}" || "$(start_time "$pid")" == "$started" ]] || return 1
  echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

healthy() { "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1/healthz" 2>/dev/null; }

selected() {
  if (($#)); then echo "$@"; elif [[ -n "${MESH_SERVICES:-}" ]]; then echo "$MESH_SERVICES"; else echo "${ALL[@]}"; fi
}

start_one() {
  local name="$1" pid port reason cmd
  if pid="$(running_pid "$name")"; then
    log "$name already running (pid $pid, $(url_of "$name")); not starting a second one"
    return 0
  fi
  if reason="$(missing_reason "$name")" && [[ -n "$reason" ]]; then
    log "$name skipped: $reason"
    return 0
  fi
  port="$(port_of "$name")"
  if port_busy "$port"; then
    log "$name not started: 127.0.0.1:$port is already taken by another process"
    return 1
  fi
  if [[ "$name" == smtp-catcher ]] && port_busy "$SMTP_PORT"; then
    log "$name not started: SMTP port 127.0.0.1:$SMTP_PORT is already taken"
    return 1
  fi
  cmd="$(command_of "$name")"
  mkdir -p "$PID_DIR" "$LOG_DIR" "$RUN_DIR/data/$name" "$RUN_DIR/traces"
  rm -f "$PID_DIR/$name.ready" "$PID_DIR/$name.child"
  echo "=== $(date -u +%FT%TZ) start: $cmd" >>"$LOG_DIR/$name.log"
  # setsid: its own process group (stop kills the whole group) that outlives this shell; the
  # supervisor leads the group and runs the process.
  # shellcheck disable=SC2046
  env $(env_of "$name" | tr '\n' ' ') setsid bash "${BASH_SOURCE[0]}" supervise "$name" \
    >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid $(start_time "$pid")" >"$PID_DIR/$name.pid"
  STARTED+=("$name")
}

# Runs one process and restarts it when it exits (see the header). Runs as the group leader.
supervise() {
  local name="$1" cmd child code=0 started delay="$RESTART_DELAY" restarts=0 ran
  STOPPING=0
  cmd="$(command_of "$name")"
  # `stop` signals the whole group: the process gets the signal itself; here it only means "no restart".
  trap 'STOPPING=1' TERM INT
  while :; do
    # shellcheck disable=SC2086
    $cmd &
    child=$!
    if ((STOPPING)); then kill -TERM "$child" 2>/dev/null || true; fi # stop came while it was being launched
    echo "$child $(start_time "$child")" >"$PID_DIR/$name.child"
    started=$SECONDS
    code=0
    # `wait` returns early when a trapped signal arrives; wait again until the process is gone.
    while :; do
      wait "$child" || code=$?
      kill -0 "$child" 2>/dev/null || break
    done
    ran=$((SECONDS - started))
    if ((STOPPING)); then exit 0; fi
    if [[ ! -f "$PID_DIR/$name.ready" ]]; then
      exit "$code" # never healthy: `start` reports it, a restart loop would hide it
    fi
    if [[ "$RESTART" == never ]]; then
      echo "=== $(date -u +%FT%TZ) supervisor: $name exited (code $code) after ${ran}s; MESH_RESTART=never"
      exit "$code"
    fi
    if ((ran >= RESTART_RESET)); then delay="$RESTART_DELAY"; fi
    restarts=$((restarts + 1))
    echo "=== $(date -u +%FT%TZ) supervisor: $name exited (code $code) after ${ran}s; restart #$restarts in ${delay}s"
    sleep "$delay" &
    wait $! || true # a stop during the backoff interrupts it
    if ((STOPPING)); then exit 0; fi
    echo "=== $(date -u +%FT%TZ) restart #$restarts: $cmd"
    delay="$(awk -v d="$delay" -v m="$RESTART_MAX_DELAY" 'BEGIN { d *= 2; print (d > m ? m : d) }')"
  done
}

wait_healthy() {
  local name="$1" pid deadline=$((SECONDS + START_TIMEOUT))
  read -r pid _ <"$PID_DIR/$name.pid"
  until healthy "$(url_of "$name")"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited during start; last lines of $LOG_DIR/$name.log:"
      tail -n 15 "$LOG_DIR/$name.log" | sed 's/^/    /' >&2
      rm -f "$PID_DIR/$name.pid"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) not answering $(url_of "$name")/healthz after ${START_TIMEOUT}s; log $LOG_DIR/$name.log"
      return 1
    fi
    sleep 0.3 # poll interval
  done
  touch "$PID_DIR/$name.ready" # from now on the supervisor restarts it when it exits
  log "$name ready (pid $pid, $(url_of "$name"), log $LOG_DIR/$name.log)"
}

# Services read the catalog topics the moment they start (the clock follower asks for offsets at
# once); right after `make up` created them, partitions may still be electing a leader.
wait_for_topic_leaders() {
  "$BIN/python" - "$KAFKA" "$START_TIMEOUT" <<'PY' || log "some catalog topics have no leader yet; starting anyway"
import sys, time
from confluent_kafka.admin import AdminClient
from contract_schema.topics import CATALOG
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
deadline = time.monotonic() + float(sys.argv[2])
names = [t.name for t in CATALOG]
while True:
    try:
        md = admin.list_topics(timeout=5).topics
        waiting = [n for n in names if n not in md or md[n].error is not None
                   or not md[n].partitions or any(p.leader < 0 for p in md[n].partitions.values())]
    except Exception as exc:  # broker not answering yet
        waiting = [str(exc)]
    if not waiting:
        sys.exit(0)
    if time.monotonic() > deadline:
        print("services: catalog topics without a leader: " + ", ".join(waiting[:5]), file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)  # poll interval
PY
}

start() {
  local name failed=0 services_selected=0
  STARTED=()
  for name in $(selected "$@"); do
    case "$name" in erp-simulator | crm-simulator | smtp-catcher) ;; *) services_selected=1 ;; esac
  done
  if ((services_selected)); then wait_for_topic_leaders; fi
  for name in $(selected "$@"); do start_one "$name" || failed=1; done
  for name in "${STARTED[@]}"; do wait_healthy "$name" || failed=1; done
  # A process can answer /healthz and die a moment later (a worker failing after the HTTP thread is up).
  for name in "${STARTED[@]}"; do
    if [[ -f "$PID_DIR/$name.pid" ]] && ! running_pid "$name" >/dev/null; then
      log "$name died right after start; last lines of $LOG_DIR/$name.log:"
      tail -n 15 "$LOG_DIR/$name.log" | sed 's/^/    /' >&2
      rm -f "$PID_DIR/$name.pid"
      failed=1
    fi
  done
  return "$failed"
}

# Signal every selected process group first, then wait for all: stops run in parallel.
stop() {
  local name pid names=() pids=() deadline i
  for name in $(selected "$@"); do
    if pid="$(running_pid "$name")"; then
      # The pid is its process group id (setsid): signal the group, so children go too.
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      names+=("$name")
      pids+=("$pid")
    else
      rm -f "$PID_DIR/$name.pid" "$PID_DIR/$name.child" "$PID_DIR/$name.ready"
    fi
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  for i in "${!names[@]}"; do
    name="${names[$i]}"
    pid="${pids[$i]}"
    while kill -0 -- "-$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        log "$name (group $pid) ignored SIGTERM for ${STOP_TIMEOUT}s, killing"
        kill -KILL -- "-$pid" 2>/dev/null || true
      fi
      sleep 0.1 # poll interval
    done
    rm -f "$PID_DIR/$name.pid" "$PID_DIR/$name.child" "$PID_DIR/$name.ready"
    log "$name stopped (pid $pid)"
  done
}

status() {
  local name pid reason any_down=0
  for name in $(selected "$@"); do
    if pid="$(running_pid "$name")"; then
      if healthy "$(url_of "$name")"; then
        printf '%-18s running  pid %-7s %s\n' "$name" "$pid" "$(url_of "$name")"
      else
        printf '%-18s starting pid %-7s %s (no /healthz answer yet)\n' "$name" "$pid" "$(url_of "$name")"
      fi
    elif reason="$(missing_reason "$name")" && [[ -n "$reason" ]]; then
      printf '%-18s absent   %s\n' "$name" "$reason"
    else
      printf '%-18s stopped\n' "$name"
      any_down=1
    fi
  done
  return "$any_down"
}

ports() {
  local name
  for name in "${ALL[@]}"; do printf '%-18s %s\n' "$name" "$(url_of "$name")"; done
  printf '%-18s smtp://127.0.0.1:%s\n' "smtp (catcher)" "$SMTP_PORT"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status "$@" ;;
  ports) ports ;;
  env) env_of "${1:?name}" ;;
  supervise) supervise "${1:?name}" ;;
  *) echo "usage: $0 start|stop|status|ports|env [name...]" >&2; exit 2 ;;
esac
