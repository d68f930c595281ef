#!/bin/bash
# Start a KRaft broker from KAFKA_* variables, as the apache/kafka image does: KAFKA_FOO_BAR=x becomes
# foo.bar=x (a double underscore stands for "_", a triple one for "-"); CLUSTER_ID formats the log
# directory on first start.
set -euo pipefail
conf=/opt/kafka/config/server.properties
: >"$conf"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_OPTS|KAFKA_LOG4J_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key="${name#KAFKA_}"
  key="$(echo "$key" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')"
  echo "$key=$value" >>"$conf"
done < <(env)
cat >/opt/kafka/config/log4j2.properties <<'CONF'
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=OUT
CONF
java_opts=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -Djava.awt.headless=true
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties)
logdir="$(sed -n 's/^log\.dirs=//p' "$conf")"
if [[ ! -f "${logdir:-/var/lib/kafka/data}/meta.properties" ]]; then
  java "${java_opts[@]}" -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format \
    --cluster-id "${CLUSTER_ID:?CLUSTER_ID is needed to format the log directory}" --config "$conf" --ignore-formatted
fi
exec java "${java_opts[@]}" -cp '/opt/kafka/libs/*' kafka.Kafka "$conf"
