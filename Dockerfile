# syntax=docker/dockerfile:1
# One image for the whole mesh: every service, the simulators and the admin commands.
# Run any of them by its command:
#   docker build -t contract-mesh .
#   docker run --rm contract-mesh contract-registry            # the registry API
#   docker run --rm contract-mesh contract-registry migrate    # the Alembic migration job
#   docker run --rm contract-mesh python -m mesh_common.provision
# The final stage runs as a non-root user and writes nothing outside /tmp, so it works with
# a read-only root filesystem (Kubernetes readOnlyRootFilesystem, `docker run --read-only --tmpfs /tmp`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: resolve every installable project of the repo into one virtualenv, pinned by constraints.txt
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /src
# Sources only (see .dockerignore): constraints, libraries, services, and the install script.
COPY . .
# Non-editable installs, so the runtime stage needs the venv only, not the sources. The same script
# builds the venv in tests/deploy/test_image.py. The cache mount only speeds up rebuilds.
RUN --mount=type=cache,target=/root/.cache/uv \
    bash deploy/docker/install-venv.sh /opt/mesh

# ---------------------------------------------------------------------------------------------
# runtime: the venv and a non-root user, nothing else
FROM ${PYTHON_IMAGE} AS runtime

# UID/GID 10001, the same number the Kubernetes manifests and docker-compose.yml run as.
RUN groupadd --system --gid 10001 mesh \
 && useradd --system --uid 10001 --gid mesh --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin mesh

COPY --from=builder /opt/mesh /opt/mesh

# MESH_HTTP_HOST: listen on every interface inside the container (the library default is loopback).
# Bytecode is compiled at build time; never try to write .pyc on a read-only filesystem.
ENV PATH=/opt/mesh/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MESH_HTTP_HOST=0.0.0.0 \
    MESH_HTTP_PORT=8080 \
    HOME=/tmp \
    TMPDIR=/tmp

WORKDIR /tmp
# Numeric user, so Kubernetes runAsNonRoot can verify it without looking up /etc/passwd.
USER 10001:10001
EXPOSE 8080

# No entrypoint wrapper: the first argument is the command (contract-registry, notifier, mesh-sim erp, ...).
CMD ["python", "-c", "print('contract mesh image: run a service by its command, e.g. contract-registry, obligation-engine, invoice-validator, renewal-sync, notifier, mesh-sim erp')"]
