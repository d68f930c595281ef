#!/usr/bin/env bash
# Local stand-ins for the public images docker-compose.yml names, built from the local Debian base
# (no image registry is reachable here): Kafka (KRaft, the project's broker jars), PostgreSQL (Debian's
# package) and an OTLP receiver in place of the OpenTelemetry collector. Each is rebuilt only when its
# recipe or inputs changed (podman's layer cache).
#
#   deploy/containers/stack-images.sh    # prints NAME=IMAGE lines for docker-compose.yml's variables
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

here="$REPO/deploy/containers"
base="$(bash "$here/base.sh")"
mesh="$(bash "$here/image.sh")"
OTEL_IMAGE="${MESH_OTEL_COLLECTOR_IMAGE:-localhost/mesh-otel-sink:local}"

build() {  # image, context dir, build args...
  local image="$1" context="$2" started
  shift 2
  started=$(date +%s)
  podman build --quiet --network host --layers "$@" -f "$context/Containerfile" -t "$image" "$context" \
    >"$CACHE/build-$(basename "$context").log" 2>&1 \
    || { tail -30 "$CACHE/build-$(basename "$context").log" >&2; log "building $image failed"; exit 1; }
  log "built $image in $(( $(date +%s) - started )) s"
}

# Kafka's context: the recipe plus the jars of infra/kafka/pom.xml (fetched by infra/scripts/kafka.sh).
bash "$REPO/infra/scripts/kafka.sh" jars
ctx="$CACHE/kafka-context"
mkdir -p "$ctx"
rm -rf "$ctx/libs" && mkdir -p "$ctx/libs" && cp -p "$REPO"/.cache/kafka/libs/*.jar "$ctx/libs/"
cp "$here/kafka/Containerfile" "$here/kafka/start-kafka.sh" "$here/kafka/kafka-broker-api-versions.sh" "$ctx/"
build "$KAFKA_IMAGE" "$ctx" --build-arg "BASE_IMAGE=$base"
build "$POSTGRES_IMAGE" "$here/postgres" --build-arg "BASE_IMAGE=$base"
build "$OTEL_IMAGE" "$here/otel" --build-arg "MESH_IMAGE=$mesh"

echo "MESH_KAFKA_IMAGE=$KAFKA_IMAGE"
echo "MESH_POSTGRES_IMAGE=$POSTGRES_IMAGE"
echo "MESH_OTEL_COLLECTOR_IMAGE=$OTEL_IMAGE"
echo "MESH_IMAGE=$MESH_IMAGE"
echo "MESH_IMAGE_TAG=$MESH_IMAGE_TAG"
