#!/usr/bin/env bash
# Install the deploy tools into .cache/bin (git-ignored), idempotently:
#   kustomize     sigs.k8s.io/kustomize/kustomize/v5      (go install, pinned)
#   kubeconform   github.com/yannh/kubeconform            (go install, pinned)
#   toxiproxy-server github.com/Shopify/toxiproxy/v2      (go install, pinned; the fault campaign's TCP proxy)
#   compose-check    deploy/tools/checkers                (compose-go: the loader of `docker compose config`)
#   dockerfile-check deploy/tools/checkers                (BuildKit's Dockerfile parser and lint rules)
#   Kubernetes JSON schemas in .cache/k8s-schemas/<version>-standalone-strict (from the kubernetes-validate wheel)
# Optional, with --with-compose-plugin (or DEPLOY_TOOLS_COMPOSE_PLUGIN=1): the Docker Compose CLI
# plugin (github.com/docker/compose/v5, pinned in deploy/tools/compose-plugin/go.mod) into
# .cache/docker/cli-plugins, so `DOCKER_CONFIG=.cache/docker docker compose config` works with the
# plain docker client. It is opt-in because a cold build downloads and compiles ~5 minutes of Go.
# A second run with everything in place does nothing and takes well under a second.
# With --only=toxiproxy (what the fault campaign runs when the binary is missing) only toxiproxy-server.
# Needs: go (Go module proxy), python3 with pip (PyPI). Prints the tool directory on success.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$ROOT/deploy/tools"
# shellcheck source=versions.env
source "$TOOLS/versions.env"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
SCHEMAS="$CACHE/k8s-schemas/$K8S_SCHEMA_VERSION-standalone-strict"
PYTHON="${PYTHON:-python3}"
WITH_COMPOSE_PLUGIN="${DEPLOY_TOOLS_COMPOSE_PLUGIN:-0}"
ONLY=""
for arg in "$@"; do
  case "$arg" in
    --with-compose-plugin) WITH_COMPOSE_PLUGIN=1 ;;
    --only=toxiproxy) ONLY=toxiproxy ;;
    *) echo "usage: $0 [--with-compose-plugin] [--only=toxiproxy]" >&2; exit 2 ;;
  esac
done
mkdir -p "$BIN"
# Two test runs starting at once must not build into the same files.
exec 9>"$CACHE/.deploy-tools.lock"
flock 9

log() { echo "deploy-tools: $*" >&2; }

# Whether $BIN/<name> was installed from <wanted> (a version, or a hash of its sources).
current() { [[ -x "$BIN/$1" && -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]; }
stamp() { echo "$2" > "$BIN/.$1.version"; }

export GOTOOLCHAIN=local GOFLAGS=-mod=mod

go_install() {  # name module version
  local name=$1 module=$2 version=$3
  current "$name" "$version" && return 0
  log "installing $name $version (go install $module@$version)"
  GOBIN="$BIN" go install "$module@$version"
  stamp "$name" "$version"
}

# The toxiproxy module names its binary `server`: built into a scratch GOBIN, then moved into place.
toxiproxy_install() {
  current toxiproxy-server "$TOXIPROXY_VERSION" && return 0
  log "installing toxiproxy-server $TOXIPROXY_VERSION (go install github.com/Shopify/toxiproxy/v2/cmd/server)"
  local scratch
  scratch="$(mktemp -d "$CACHE/.toxiproxy.XXXXXX")"
  GOBIN="$scratch" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
  mv -f "$scratch/server" "$BIN/toxiproxy-server"
  rm -rf "$scratch"
  stamp toxiproxy-server "$TOXIPROXY_VERSION"
}

toxiproxy_install
if [[ "$ONLY" == toxiproxy ]]; then
  echo "$BIN"
  exit 0
fi

go_install kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

# compose-check and dockerfile-check: one Go module, versions pinned by its go.mod and go.sum.
checkers_hash=$(cat "$TOOLS"/checkers/go.mod "$TOOLS"/checkers/go.sum "$TOOLS"/checkers/*/main.go | sha256sum | cut -c1-16)
for tool in compose-check dockerfile-check; do
  if ! current "$tool" "$checkers_hash"; then
    log "building $tool (deploy/tools/checkers)"
    (cd "$TOOLS/checkers" && GOFLAGS=-mod=readonly go build -trimpath -o "$BIN/$tool" "./$tool")
    stamp "$tool" "$checkers_hash"
  fi
done

schema_stamp="$KUBERNETES_VALIDATE_VERSION/$K8S_SCHEMA_VERSION/$(sha256sum "$TOOLS/k8s_schemas.py" | cut -c1-16)"
if [[ ! -f "$SCHEMAS/.stamp" || "$(cat "$SCHEMAS/.stamp")" != "$schema_stamp" ]]; then
  wheel="$CACHE/downloads/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-py3-none-any.whl"
  if [[ ! -f "$wheel" ]]; then
    log "downloading kubernetes-validate $KUBERNETES_VALIDATE_VERSION (Kubernetes JSON schemas)"
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$CACHE/downloads" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
  echo "$KUBERNETES_VALIDATE_SHA256  $wheel" | sha256sum --check --quiet - \
    || { log "checksum mismatch for $wheel"; rm -f "$wheel"; exit 1; }
  rm -rf "$SCHEMAS"
  "$PYTHON" "$TOOLS/k8s_schemas.py" "$wheel" "$K8S_SCHEMA_VERSION" "$SCHEMAS" >&2
  echo "$schema_stamp" > "$SCHEMAS/.stamp"
fi

if [[ "$WITH_COMPOSE_PLUGIN" == 1 ]]; then
  plugins="$CACHE/docker/cli-plugins"
  plugin_hash=$(cat "$TOOLS"/compose-plugin/{go.mod,go.sum,tools.go} | sha256sum | cut -c1-16)
  if [[ ! -x "$plugins/docker-compose" || "$(cat "$plugins/.docker-compose.version" 2>/dev/null)" != "$plugin_hash" ]]; then
    log "building the docker compose plugin ($(grep 'docker/compose/v5 ' "$TOOLS/compose-plugin/go.mod" | tr -s ' \t' ' '))"
    mkdir -p "$plugins"
    version=$(awk '$1 == "require" && $2 == "github.com/docker/compose/v5" {print $3}' "$TOOLS/compose-plugin/go.mod")
    (cd "$TOOLS/compose-plugin" && GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-X github.com/docker/compose/v5/internal.Version=$version" -o "$plugins/docker-compose" \
      github.com/docker/compose/v5/cmd)
    echo "$plugin_hash" > "$plugins/.docker-compose.version"
  fi
fi

echo "$BIN"
