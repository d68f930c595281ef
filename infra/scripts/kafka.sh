#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft combined mode: broker + controller in one JVM)
# for local development and integration tests.
#
#   infra/scripts/kafka.sh jars|start|stop|status   (jars: fetch the pinned broker jars)
#
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1),
#      KAFKA_DIR (<repo>/.run/kafka), KAFKA_START_TIMEOUT (60 s), KAFKA_HEAP_MAX (1536m: a whole test
#      session creates thousands of partitions; 512m ran out of heap),
#      PYTHON (interpreter with confluent_kafka, default <repo>/.venv/bin/python),
#      KAFKA_EXTRA_LISTENERS (space-separated NAME:PORT:ADVERTISED_PORT: more plaintext listeners on
#      127.0.0.1:PORT that advertise 127.0.0.1:ADVERTISED_PORT, e.g. a TCP proxy in front of PORT, so
#      clients that bootstrap through the proxy keep talking through it).
# Jars live in .cache/kafka/libs, fetched with Maven from infra/kafka/pom.xml.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_DIR="${KAFKA_DIR:-$REPO/.run/kafka}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
LIBS="$REPO/.cache/kafka/libs"
PID_FILE="$KAFKA_DIR/kafka.pid"
LOG_FILE="$KAFKA_DIR/kafka.log"
CONF="$KAFKA_DIR/server.properties"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi

log() { echo "kafka: $*" >&2; }

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Fetch the pinned jars once per pom.xml content. Fetched beside, then swapped
# in, so a broker already running from the old copy keeps its open jars.
ensure_jars() {
  local pom="$REPO/infra/kafka/pom.xml" want
  want="$(sha256sum "$pom" | cut -d' ' -f1)"
  if [[ "$(cat "$LIBS/.pom.sha256" 2>/dev/null)" == "$want" ]]; then return 0; fi
  log "fetching broker jars into $LIBS"
  rm -rf "$LIBS.new"
  mvn -B -q -f "$pom" dependency:copy-dependencies -DoutputDirectory="$LIBS.new"
  echo "$want" >"$LIBS.new/.pom.sha256"
  rm -rf "$LIBS"
  mv "$LIBS.new" "$LIBS"
}

# A real metadata round trip, not just an open port: the broker answers only
# once the controller quorum has elected itself and the broker is unfenced.
answers_metadata() {
  "$PYTHON" - "127.0.0.1:$KAFKA_PORT" <<'PY' >/dev/null 2>&1
import sys
from confluent_kafka.admin import AdminClient
AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=2)
PY
}

write_config() {
  mkdir -p "$KAFKA_DIR/data"
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
  local advertised="PLAINTEXT://127.0.0.1:$KAFKA_PORT"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  local extra name port adv
  for extra in ${KAFKA_EXTRA_LISTENERS:-}; do
    IFS=: read -r name port adv <<<"$extra"
    listeners+=",$name://127.0.0.1:$port"
    advertised+=",$name://127.0.0.1:$adv"
    protocols+=",$name:PLAINTEXT"
  done
  cat >"$CONF" <<CONF
process.roles=broker,controller
node.id=1
# Static single voter: the controller port lives in this file, not in the
# formatted log, so restarting on other ports needs no reformat.
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$KAFKA_DIR/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Faust creates its internal (changelog/repartition) topics on first use.
auto.create.topics.enable=true
delete.topic.enable=true
CONF
  cat >"$KAFKA_DIR/log4j2.properties" <<'CONF'
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=OUT
logger.state.name=state.change.logger
logger.state.level=WARN
CONF
}

start() {
  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  "$PYTHON" -c 'import confluent_kafka' 2>/dev/null \
    || { log "$PYTHON cannot import confluent_kafka (needed to probe readiness): run make venv or set PYTHON"; exit 1; }
  ensure_jars
  write_config
  local java_opts=(-Xms256m -Xmx${KAFKA_HEAP_MAX:-1536m} -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.properties")
  if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
    local cluster_id
    # Kafka cluster ids are 16 random bytes, base64url without padding; one starting with "-"
    # would be read as an option by the storage tool, so draw again in that case.
    cluster_id="$(python3 -c 'import base64, uuid
while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
    pass
print(cid)')"
    log "formatting $KAFKA_DIR/data (cluster id $cluster_id)"
    java "${java_opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
      --cluster-id "$cluster_id" --config "$CONF" --ignore-formatted >>"$LOG_FILE" 2>&1 \
      || { tail -n 30 "$LOG_FILE" >&2; exit 1; }
  fi
  log "starting on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT), log $LOG_FILE"
  # setsid: the broker must not die with the shell (or pytest) that started it.
  setsid java "${java_opts[@]}" -cp "$LIBS/*" kafka.Kafka "$CONF" >>"$LOG_FILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  until answers_metadata; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "broker exited during start; last log lines:"
      tail -n 40 "$LOG_FILE" >&2
      rm -f "$PID_FILE"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "no metadata answer within ${KAFKA_START_TIMEOUT}s; last log lines:"
      tail -n 40 "$LOG_FILE" >&2
      stop
      exit 1
    fi
    sleep 0.5 # poll interval
  done
  log "ready (pid $pid)"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$pid"
  # Controlled shutdown normally takes a few seconds; escalate after 30 s.
  local deadline=$((SECONDS + 30))
  local killed=0
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline && !killed)); then
      log "pid $pid ignored SIGTERM for 30s, killing"
      kill -KILL "$pid" 2>/dev/null || true
      killed=1
    fi
    sleep 0.2 # poll interval
  done
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    if answers_metadata; then
      echo "kafka: running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
    else
      echo "kafka: pid $pid alive but 127.0.0.1:$KAFKA_PORT does not answer metadata yet"
    fi
  else
    echo "kafka: not running"
    return 1
  fi
}

case "${1:-}" in
  jars) ensure_jars ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 jars|start|stop|status" >&2; exit 2 ;;
esac
