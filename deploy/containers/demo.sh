#!/usr/bin/env bash
# `make demo-containers`: the demo story (mesh-demo) against the compose stack under podman. Brings
# the stack up (deploy/containers/compose.sh up; quick when it already runs), then runs mesh-demo from
# the project's image on the host's network, so it reaches the stack through the published ports as a
# user on this machine would. The demo finds the stack's processes through a status-only stand-in for
# infra/scripts/services.sh (deploy/containers/demo/), and the spans of its tracing chapter in the
# collector stand-in's output. The stack is left running: `make compose-down` removes it.
#
# Env: MESH_DEMO_TIMEOUT (seconds per outcome), the MESH_*_PORT variables of docker-compose.yml.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bash "$REPO/deploy/containers/compose.sh" up

run_dir="$REPO/.run/containers"
mkdir -p "$run_dir/traces" "$run_dir/logs"
: >"$run_dir/traces/otel-collector.jsonl"
# Every span the stack exports, as JSON lines, where the demo's tracing chapter reads span files.
podman logs -f --since 1s contract-mesh_otel-collector_1 >"$run_dir/traces/otel-collector.jsonl" 2>/dev/null &
follower=$!
trap 'kill "$follower" 2>/dev/null || true' EXIT

# The demo names a process's port <NAME>_PORT; docker-compose.yml names the same host port MESH_*_PORT.
ports=(CONTRACT_REGISTRY_PORT="${MESH_REGISTRY_PORT:-8081}" OBLIGATION_ENGINE_PORT="${MESH_OBLIGATION_PORT:-8082}"
       INVOICE_VALIDATOR_PORT="${MESH_VALIDATOR_PORT:-8083}" RENEWAL_SYNC_PORT="${MESH_RENEWAL_PORT:-8084}"
       NOTIFIER_PORT="${MESH_NOTIFIER_PORT:-8085}" ERP_SIMULATOR_PORT="${MESH_ERP_PORT:-8091}"
       CRM_SIMULATOR_PORT="${MESH_CRM_PORT:-8092}" SMTP_CATCHER_PORT="${MESH_SMTP_HTTP_PORT:-8093}")
envs=()
for pair in "${ports[@]}"; do envs+=(--env "$pair"); done

podman run --rm --name contract-mesh-demo --network host --read-only --tmpfs /tmp \
  -v "$REPO/deploy/containers/demo:/demo:ro" -v "$run_dir:/run-dir:ro" --workdir /demo \
  --env MESH_RUN_DIR=/run-dir --env "MESH_DEMO_TIMEOUT=${MESH_DEMO_TIMEOUT:-60}" "${envs[@]}" \
  "$MESH_IMAGE:$MESH_IMAGE_TAG" mesh-demo --bootstrap "127.0.0.1:${MESH_KAFKA_PORT:-29092}"
