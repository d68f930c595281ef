#!/usr/bin/env bash
# Shared by the scripts in deploy/containers/: where things live and how podman is called here.
# Sourced, not run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$REPO/.cache/containers"
# podman reads this file instead of /etc/containers/containers.conf (see write_containers_conf).
export CONTAINERS_CONF="$CACHE/containers.conf"

BASE_IMAGE="${MESH_BASE_IMAGE:-localhost/mesh-base:bookworm}"
MESH_IMAGE="${MESH_IMAGE:-localhost/contract-mesh}"
MESH_IMAGE_TAG="${MESH_IMAGE_TAG:-dev}"
KAFKA_IMAGE="${MESH_KAFKA_IMAGE:-localhost/mesh-kafka:local}"
POSTGRES_IMAGE="${MESH_POSTGRES_IMAGE:-localhost/mesh-postgres:local}"

log() { echo "containers: [$(date +%T)] $*" >&2; }

# Debian's podman works on this kind of machine only with runc and the cgroupfs manager, and without
# the default ulimits (their setrlimit is refused here).
write_containers_conf() {
  mkdir -p "$CACHE"
  cat >"$CONTAINERS_CONF.new" <<'CONF'
# Written by deploy/containers/common.sh; podman finds it through CONTAINERS_CONF.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  mv "$CONTAINERS_CONF.new" "$CONTAINERS_CONF"
}

# Debian's packages only (apt-get update first: a fresh machine has no package lists).
install_packages() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v podman-compose >/dev/null || missing+=(podman-compose)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq podman runc debootstrap podman-compose \
      uidmap slirp4netns >/dev/null
  fi
  write_containers_conf
}

image_exists() { podman image exists "$1"; }

# The label a recipe-built image carries: the hash of what it was built from.
image_label() { podman image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null || true; }
