#!/usr/bin/env bash
# The project's image, built with podman from the unchanged Dockerfile on the local Debian base
# (deploy/containers/base.sh). podman's layer cache makes a rebuild with unchanged sources a matter
# of seconds.
#
#   deploy/containers/image.sh           # prints the image reference
#
# The build runs with the host's network and trust store, so pip and uv inside reach the same package
# index as the host does; the trust store and the build-only pip/uv settings are bind mounts of the RUN
# steps, never layers of the image.
#
# Env: MESH_BUILD_CONTEXT (default: the repository's working tree, as `docker build .`), MESH_IMAGE,
#      MESH_IMAGE_TAG (localhost/contract-mesh:dev).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

base="$(bash "$REPO/deploy/containers/base.sh")"
ref="$MESH_IMAGE:$MESH_IMAGE_TAG"
context="${MESH_BUILD_CONTEXT:-$REPO}"
ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}

mkdir -p "$CACHE/build"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$CACHE/build/pip.conf"
printf 'native-tls = true\n' >"$CACHE/build/uv.toml"
mounts=(-v "$CACHE/build/pip.conf:/etc/pip.conf:ro" -v "$CACHE/build/uv.toml:/etc/uv/uv.toml:ro")
[[ -f "$ca" ]] && mounts+=(-v "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
# Index settings of the caller (e.g. PIP_INDEX_URL in CI) reach pip and uv in the builder as well.
envs=()
for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL UV_INDEX_URL UV_EXTRA_INDEX_URL UV_DEFAULT_INDEX; do
  [[ -n "${!name:-}" ]] && envs+=(--env "$name=${!name}")
done

# Each rebuild leaves the previous image untagged; the newest ones stay as the layer cache.
podman image prune --force --filter until=24h >/dev/null 2>&1 || true
started=$(date +%s)
podman build --quiet --network host --layers --build-arg "PYTHON_IMAGE=$base" "${mounts[@]}" "${envs[@]}" \
  -f "$context/Dockerfile" -t "$ref" "$context" >"$CACHE/build.log" 2>&1 \
  || { tail -40 "$CACHE/build.log" >&2; log "podman build failed (whole log: $CACHE/build.log)"; exit 1; }
log "built $ref in $(( $(date +%s) - started )) s"
echo "$ref"
