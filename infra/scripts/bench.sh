#!/usr/bin/env bash
# Run every service benchmark (services/*/bench/run.py) against one real broker and database.
#
#   infra/scripts/bench.sh [service...]        (no names: every service that has bench/run.py)
#
# Broker: $BENCH_BOOTSTRAP when set; else the `make up` broker on 127.0.0.1:$KAFKA_PORT (9092)
# when it answers; else this script starts that broker (infra/scripts/kafka.sh) and stops it
# again at the end. PostgreSQL the same way: $BENCH_DATABASE_URL, else the `make up` cluster
# on $PG_PORT (5432), started (and stopped afterwards) when not running.
# Each benchmark prints its own figures, its baseline and the ratio; this script prints them
# as they come, then one line per benchmark with its exit status and wall time.
# Env passed through: BENCH_SCALE (1.0 = what each issue asks), BENCH_* of each benchmark.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
PG_PORT="${PG_PORT:-5432}"
export PYTHON="$PY"

log() { echo "bench: $*" >&2; }

kafka_answers() {
  "$PY" - "$1" <<'PY' >/dev/null 2>&1
import sys
from confluent_kafka.admin import AdminClient
AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)
PY
}

started_kafka=0
started_pg=0
cleanup() {
  if ((started_kafka)); then bash "$REPO/infra/scripts/kafka.sh" stop || true; fi
  if ((started_pg)); then bash "$REPO/infra/scripts/postgres.sh" stop || true; fi
}
trap cleanup EXIT

if [[ -z "${BENCH_BOOTSTRAP:-}" ]]; then
  if ! kafka_answers "127.0.0.1:$KAFKA_PORT"; then
    log "no broker on 127.0.0.1:$KAFKA_PORT: starting the make-up broker for the benchmarks"
    bash "$REPO/infra/scripts/kafka.sh" start || exit 1
    started_kafka=1
  fi
  export BENCH_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
fi
if [[ -z "${BENCH_DATABASE_URL:-}" ]]; then
  if ! bash "$REPO/infra/scripts/postgres.sh" status >/dev/null 2>&1; then
    log "PostgreSQL not running on $PG_PORT: starting the make-up cluster for the benchmarks"
    bash "$REPO/infra/scripts/postgres.sh" start || exit 1
    started_pg=1
  fi
  export BENCH_DATABASE_URL="postgresql+psycopg://mesh:mesh@127.0.0.1:$PG_PORT/${PG_DATABASE:-contracts}"
fi
log "broker $BENCH_BOOTSTRAP, database $BENCH_DATABASE_URL, scale ${BENCH_SCALE:-1.0}"

if (($#)); then
  benches=()
  for name in "$@"; do benches+=("$REPO/services/$name/bench/run.py"); done
else
  benches=("$REPO"/services/*/bench/run.py)
fi

results=()
failed=0
for bench in "${benches[@]}"; do
  service="$(basename "$(dirname "$(dirname "$bench")")")"
  if [[ ! -f "$bench" ]]; then
    results+=("$service: no bench/run.py")
    failed=1
    continue
  fi
  echo
  echo "=== $service: python services/$service/bench/run.py"
  start=$SECONDS
  (cd "$REPO" && "$PY" "$bench")
  rc=$?
  results+=("$(printf '%-18s exit %-3s %5ss' "$service" "$rc" "$((SECONDS - start))")")
  ((rc == 0)) || failed=1
done

echo
echo "=== benchmarks"
printf '%s\n' "${results[@]}"
exit "$failed"
