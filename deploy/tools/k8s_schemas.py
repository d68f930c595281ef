"""Turn the Kubernetes JSON schemas shipped in the `kubernetes-validate` wheel into kubeconform's layout.

kubeconform normally downloads standalone schemas from GitHub, which this project cannot reach.
The `kubernetes-validate` package (PyPI) ships the same schemas, generated from the Kubernetes
OpenAPI spec, but "local": every resource schema refers to one shared `_definitions.json` by an
absolute URI. kubeconform resolves such a URI over the network, so this script inlines, into each
top-level resource schema, just the definitions it reaches (transitively), and writes
`<kind>-<group>-<version>.json` files, the names kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}`
template expects.

    python deploy/tools/k8s_schemas.py WHEEL_OR_DIR K8S_VERSION OUTPUT_DIR
    e.g. ... kubernetes_validate-1.34.1-py3-none-any.whl v1.34.0 .cache/k8s-schemas/v1.34.0-standalone-strict
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFS_URI = "/api/_definitions.json#/$defs/"
LOCAL = "#/$defs/"


def _source_files(source: Path, version: str) -> dict[str, bytes]:
    folder = f"kubernetes_validate/kubernetes-json-schema/{version}-local-strict/"
    if source.is_dir():
        base = source / folder
        return {p.name: p.read_bytes() for p in base.glob("*.json")}
    with zipfile.ZipFile(source) as wheel:
        return {
            name[len(folder):]: wheel.read(name)
            for name in wheel.namelist()
            if name.startswith(folder) and name.endswith(".json") and "/" not in name[len(folder):]
        }


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _localise(node: Any) -> Any:
    """Rewrite refs into the shared definitions to refs into this document's own $defs."""
    if isinstance(node, dict):
        return {
            key: (LOCAL + value[len(DEFS_URI):] if key == "$ref" and isinstance(value, str)
                  and value.startswith(DEFS_URI) else _localise(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_localise(item) for item in node]
    return node


def _def_name(ref: str) -> str | None:
    for prefix in (DEFS_URI, LOCAL):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return None


def standalone(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    needed: dict[str, Any] = {}
    todo = [n for n in map(_def_name, _refs(schema)) if n]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed[name] = definitions[name]
        todo.extend(n for n in map(_def_name, _refs(definitions[name])) if n and n not in needed)
    out = {k: v for k, v in _localise(schema).items() if k != "$id"}
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    if needed:
        out["$defs"] = {name: needed[name] for name in sorted(needed)}
    return out


def is_resource(schema: dict[str, Any]) -> bool:
    """A top-level kind: its `kind` and `apiVersion` properties are pinned by an enum."""
    props = schema.get("properties", {})
    return "enum" in props.get("kind", {}) and "enum" in props.get("apiVersion", {})


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, version, output = Path(argv[0]), argv[1], Path(argv[2])
    files = _source_files(source, version)
    if "_definitions.json" not in files:
        print(f"no {version}-local-strict schemas in {source}", file=sys.stderr)
        return 1
    definitions = json.loads(files.pop("_definitions.json"))["$defs"]
    output.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, raw in sorted(files.items()):
        schema = json.loads(raw)
        if name == "all.json" or not is_resource(schema):
            continue
        (output / name).write_text(json.dumps(standalone(schema, definitions), separators=(",", ":")))
        written += 1
    print(f"wrote {written} standalone Kubernetes {version} schemas to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
