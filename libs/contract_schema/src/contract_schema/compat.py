"""Schema compatibility: which changes to an event's JSON Schema would break an existing consumer.

A consumer built against `old` must still read records written against `new`, and a consumer
built against `new` must still read the records already on the topic. So, within one major
version: no field removed, no type narrowed (or enum value dropped), no new required field.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Human-readable list of breaking differences; empty when `new` is a compatible evolution."""
    problems: list[str] = []
    _compare_object(old, new, old.get("$defs", {}), new.get("$defs", {}), "", problems, set())
    return problems


def _resolve(schema: Schema, defs: Schema) -> tuple[Schema, str | None]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return defs.get(name, {}), name
    return schema, None


def _kinds(schema: Schema, defs: Schema) -> set[str]:
    """Flatten a property schema into the set of value kinds it accepts."""
    schema, ref_name = _resolve(schema, defs)
    if ref_name and "enum" not in schema and schema.get("type", "object") == "object":
        return {f"object:{ref_name}"}
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            out: set[str] = set()
            for option in schema[combinator]:
                out |= _kinds(option, defs)
            return out
    if "enum" in schema:
        return {f"enum:{v}" for v in schema["enum"]}
    if "const" in schema:
        return {f"enum:{schema['const']}"}
    kind = schema.get("type")
    if kind is None:
        return {"any"}
    kinds = kind if isinstance(kind, list) else [kind]
    fmt = schema.get("format")
    return {f"{k}:{fmt}" if fmt else str(k) for k in kinds}


def _narrowed(old_kinds: set[str], new_kinds: set[str]) -> set[str]:
    if "any" in new_kinds:
        return set()
    lost = old_kinds - new_kinds
    if "number" in new_kinds:
        lost.discard("integer")
    return lost


def _compare_object(old: Schema, new: Schema, old_defs: Schema, new_defs: Schema, path: str,
                    problems: list[str], seen: set[str]) -> None:
    old_props: Schema = old.get("properties", {})
    new_props: Schema = new.get("properties", {})
    for name in old_props.keys() - new_props.keys():
        problems.append(f"{path}{name}: field removed")
    for name in set(new.get("required", ())) - set(old.get("required", ())):
        problems.append(f"{path}{name}: new required field")
    for name in old_props.keys() & new_props.keys():
        here = f"{path}{name}"
        old_kinds = _kinds(old_props[name], old_defs)
        new_kinds = _kinds(new_props[name], new_defs)
        lost = _narrowed(old_kinds, new_kinds)
        if lost:
            problems.append(f"{here}: type narrowed, no longer accepts {sorted(lost)}")
        _compare_nested(old_props[name], new_props[name], old_defs, new_defs, here, problems, seen)


def _compare_nested(old: Schema, new: Schema, old_defs: Schema, new_defs: Schema, path: str,
                    problems: list[str], seen: set[str]) -> None:
    """Recurse into referenced objects and array items reached through the same path."""
    old_res, old_ref = _resolve(old, old_defs)
    new_res, new_ref = _resolve(new, new_defs)
    if old_ref and new_ref:
        token = f"{path}->{old_ref}/{new_ref}"
        if token in seen:
            return
        seen.add(token)
        _compare_object(old_res, new_res, old_defs, new_defs, path + ".", problems, seen)
        return
    for combinator in ("anyOf", "oneOf"):
        if combinator in old_res and combinator in new_res:
            for o in old_res[combinator]:
                for n in new_res[combinator]:
                    if _resolve(o, old_defs)[1] and _resolve(o, old_defs)[1] == _resolve(n, new_defs)[1]:
                        _compare_nested(o, n, old_defs, new_defs, path, problems, seen)
    if "items" in old_res and "items" in new_res:
        item_path = path + "[]"
        lost = _narrowed(_kinds(old_res["items"], old_defs), _kinds(new_res["items"], new_defs))
        if lost:
            problems.append(f"{item_path}: item type narrowed, no longer accepts {sorted(lost)}")
        _compare_nested(old_res["items"], new_res["items"], old_defs, new_defs, item_path, problems, seen)
