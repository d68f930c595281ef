#!/usr/bin/env bash
# The base image every local image starts from: Debian bookworm (minbase) with Python 3.11, built
# from Debian's own packages by debootstrap, since no image registry is reachable here. The root
# filesystem is cached as .cache/containers/base-<key>.tar and imported into podman when missing.
#
#   deploy/containers/base.sh            # prints the image name
#
# Env: MESH_DEBIAN_MIRROR (default: the first Debian URI in this machine's apt sources).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
KEY="$(echo "$SUITE $PACKAGES minbase v1" | cksum | cut -d' ' -f1)"
TARBALL="$CACHE/base-$SUITE-$KEY.tar"

# The mirror apt already uses, so the build reaches what the machine reaches.
debian_mirror() {
  if [[ -n "${MESH_DEBIAN_MIRROR:-}" ]]; then echo "$MESH_DEBIAN_MIRROR"; return; fi
  local uri
  uri="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
         | grep -E '/debian/?$' | head -1 || true)"
  if [[ -z "$uri" ]]; then
    uri="$(grep -hE '^deb\s' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)"
  fi
  [[ -n "$uri" ]] || { log "no Debian mirror in the apt sources; set MESH_DEBIAN_MIRROR"; exit 1; }
  echo "$uri"
}

build_tarball() {
  local root="$CACHE/rootfs-$SUITE.tmp" mirror started
  mirror="$(debian_mirror)"
  started=$(date +%s)
  log "debootstrap $SUITE (minbase + $PACKAGES) into $root"
  rm -rf "$root"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # Smaller image: no package lists or caches (Containerfiles that add packages run apt-get update).
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" --numeric-owner -cf "$TARBALL.new" .
  mv "$TARBALL.new" "$TARBALL"
  rm -rf "$root"
  log "base root filesystem built in $(( $(date +%s) - started )) s"
}

install_packages
if [[ "$(image_label "$BASE_IMAGE" mesh.base.key)" != "$KEY" ]]; then
  [[ -f "$TARBALL" ]] || build_tarball
  podman import --quiet --change "LABEL mesh.base.key=$KEY" --change "ENV LANG=C.UTF-8" --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$BASE_IMAGE" >/dev/null
  log "imported $BASE_IMAGE"
fi
echo "$BASE_IMAGE"
