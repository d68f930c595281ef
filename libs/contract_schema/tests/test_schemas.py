"""Committed JSON Schemas / AsyncAPI are current, and every event stays compatible within its topic's major version."""

from __future__ import annotations

import json

import pytest

from contract_schema import export, topics
from contract_schema.compat import breaking_changes


def test_committed_schema_files_are_up_to_date() -> None:
    assert export.stale() == [], "run `make schemas` and commit the result"


def test_asyncapi_lists_every_topic_with_its_messages() -> None:
    doc = export.asyncapi_document()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"]: c for c in doc["channels"].values()}
    assert set(addresses) == {t.name for t in topics.CATALOG}
    for topic in topics.CATALOG:
        channel = addresses[topic.name]
        assert set(channel["messages"]) == {e.__name__ for e in topic.events}
        assert channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == [topic.cleanup_policy]
        for name in channel["messages"]:
            payload_ref = doc["components"]["messages"][name]["payload"]["$ref"]
            assert payload_ref.rsplit("/", 1)[1] in doc["components"]["schemas"]


@pytest.mark.parametrize(
    ("topic", "event"), [(t, e) for t in topics.CATALOG for e in t.events], ids=lambda x: getattr(x, "__name__", ""))
def test_event_is_compatible_with_its_major_version_baseline(topic: topics.TopicSpec, event: type) -> None:
    path = export.baseline_path(topic, event)
    assert path.exists(), f"no compatibility baseline for {event.__name__} on {topic.name}: run `make schemas`"
    problems = breaking_changes(json.loads(path.read_text()), export.event_schema(event))
    assert problems == [], f"breaking change on {topic.name}: bump the topic's major version. {problems}"


def _schema(props: dict[str, object], required: list[str], defs: dict[str, object] | None = None) -> dict[str, object]:
    return {"type": "object", "properties": props, "required": required, "$defs": defs or {}}


OPTIONAL_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
BASE = _schema({"a": {"type": "string"}, "n": {"type": "integer"}, "o": OPTIONAL_STRING}, ["a"])


def test_additive_optional_field_is_compatible() -> None:
    new = _schema(dict(BASE["properties"]) | {"extra": {"type": "string"}}, ["a"])  # type: ignore[arg-type]
    assert breaking_changes(BASE, new) == []


def test_removed_field_is_breaking() -> None:
    new = _schema({"a": {"type": "string"}, "o": {"type": "string"}}, ["a"])
    assert any("n: field removed" in p for p in breaking_changes(BASE, new))


def test_new_required_field_is_breaking() -> None:
    new = _schema(dict(BASE["properties"]) | {"must": {"type": "string"}}, ["a", "must"])  # type: ignore[arg-type]
    assert breaking_changes(BASE, new) == ["must: new required field"]


def test_narrowed_type_is_breaking_and_widening_integer_to_number_is_not() -> None:
    narrowed = _schema({"a": {"type": "string"}, "n": {"type": "integer"}, "o": {"type": "string"}}, ["a"])
    assert breaking_changes(BASE, narrowed) == ["o: type narrowed, no longer accepts ['null']"]
    widened = _schema({"a": {"type": "string"}, "n": {"type": "number"},
                       "o": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, ["a"])
    assert breaking_changes(BASE, widened) == []


def test_nested_model_changes_are_found_through_refs() -> None:
    old = _schema({"p": {"$ref": "#/$defs/P"}}, ["p"], {"P": _schema({"x": {"type": "string"}}, ["x"])})
    new = _schema({"p": {"$ref": "#/$defs/P"}}, ["p"], {"P": _schema({"y": {"type": "string"}}, ["y"])})
    problems = breaking_changes(old, new)
    assert "p.x: field removed" in problems and "p.y: new required field" in problems


def test_dropped_enum_value_is_breaking() -> None:
    old = _schema({"s": {"$ref": "#/$defs/S"}}, [], {"S": {"enum": ["a", "b"], "type": "string"}})
    new = _schema({"s": {"$ref": "#/$defs/S"}}, [], {"S": {"enum": ["a"], "type": "string"}})
    assert breaking_changes(old, new) == ["s: type narrowed, no longer accepts ['enum:b']"]
