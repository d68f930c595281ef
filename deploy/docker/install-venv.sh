#!/usr/bin/env bash
# Build the mesh's runtime virtualenv: every library and service of the repo installed (not
# editable, bytecode compiled) from constraints.txt; the test-only plugin (libs/mesh_testing) stays
# out, and so does the fault campaign (libs/mesh_chaos, which drives the mesh from outside). The Dockerfile's builder stage runs this, and so does tests/deploy/test_image.py, so the image
# recipe is tested without a Docker engine.
#
#   bash deploy/docker/install-venv.sh VENV_DIR      # from the repository root (the build context)
set -euo pipefail

venv=${1:?usage: install-venv.sh VENV_DIR}
python=${PYTHON:-python3}

# UV=/path/to/uv reuses an installed uv (the tests pass the dev venv's); otherwise, as in the image,
# the venv gets uv from constraints.txt and drops it again at the end.
if [[ -n "${UV:-}" ]]; then
  uv=$UV
  "$uv" venv -q --python "$python" "$venv"
else
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -c constraints.txt uv
  uv="$venv/bin/uv"
fi

# Every project with a pyproject under libs/ and services/ (services appear over time).
mapfile -t projects < <(find libs services -mindepth 2 -maxdepth 2 -name pyproject.toml \
                          -not -path 'libs/mesh_testing/*' -not -path 'libs/mesh_chaos/*' -printf '%h\n' | sort)
echo "installing into $venv: ${projects[*]}"
"$uv" pip install --python "$venv/bin/python" --compile-bytecode -c constraints.txt "${projects[@]}"

# The runtime needs neither installer.
if [[ -z "${UV:-}" ]]; then
  "$uv" pip uninstall -q --python "$venv/bin/python" uv pip
fi
"$venv/bin/python" -c "import contract_schema, mesh_common"
