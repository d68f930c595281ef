"""Writes the JSON Schema of every event, the AsyncAPI 3.0 document and the compatibility baselines.

    python -m contract_schema.export           # write (what `make schemas` runs)
    python -m contract_schema.export --check   # exit 1 when the committed files are out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from . import __version__
from .base import Event
from .topics import CATALOG, TopicSpec

SCHEMA_DIR = Path(__file__).parent / "schemas"
CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "stable event id; consumers deduplicate on it"},
        "ce_source": {"type": "string", "description": "URI-reference of the producing service"},
        "ce_type": {"type": "string"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "the record key's entity"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
}


def event_schema(event: type[Event]) -> dict[str, Any]:
    return event.model_json_schema(mode="serialization")


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _channel_id(topic: TopicSpec) -> str:
    return topic.name.replace(".", "_")


def asyncapi_document() -> dict[str, Any]:
    events = [e for topic in CATALOG for e in topic.events]
    _, top = models_json_schema([(e, "serialization") for e in events],
                                ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in CATALOG:
        channel_messages = {}
        for event in topic.events:
            name = event.__name__
            messages[name] = {
                "name": name,
                "title": name,
                "summary": (event.__doc__ or name).strip().splitlines()[0],
                "contentType": "application/json",
                "headers": CLOUDEVENTS_HEADERS | {"examples": [{"ce_type": event.ce_type}]},
                "payload": {"$ref": f"#/components/schemas/{name}"},
                "bindings": {"kafka": {"key": {"type": "string", "description": topic.key},
                                       "bindingVersion": "0.5.0"}},
            }
            channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
        topic_config: dict[str, Any] = {"cleanup.policy": [topic.cleanup_policy]}
        if topic.retention_ms is not None:
            topic_config["retention.ms"] = topic.retention_ms
        cid = _channel_id(topic)
        channels[cid] = {
            "address": topic.name,
            "description": f"{topic.description} Key: {topic.key}. Dead letters: {topic.dlq_name}.",
            "messages": channel_messages,
            "bindings": {"kafka": {"topic": topic.name, "partitions": topic.partitions,
                                   "topicConfiguration": topic_config, "bindingVersion": "0.5.0"}},
        }
        operations[f"receive_{cid}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in channel_messages],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Contract mesh events", "version": __version__,
                 "description": "Every topic of the contract mesh. Events are CloudEvents 1.0 in Kafka "
                                "binary mode: ce_* headers, JSON body, W3C traceparent."},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def generated_files() -> dict[Path, str]:
    """Every file `make schemas` owns, except the compatibility baselines."""
    files = {SCHEMA_DIR / "asyncapi.json": _dump(asyncapi_document())}
    for topic in CATALOG:
        for event in topic.events:
            files[SCHEMA_DIR / "json" / f"{event.__name__}.json"] = _dump(event_schema(event))
    return files


def baseline_path(topic: TopicSpec, event: type[Event]) -> Path:
    """Frozen schema of an event as first published on a topic's major version."""
    return SCHEMA_DIR / "compat" / topic.name / f"{event.__name__}.json"


def write() -> list[Path]:
    written = []
    for path, text in generated_files().items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    for topic in CATALOG:
        for event in topic.events:
            path = baseline_path(topic, event)
            if not path.exists():  # baselines are written once per major version, never updated
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(_dump(event_schema(event)))
                written.append(path)
    return written


def stale() -> list[Path]:
    return [p for p, text in generated_files().items() if not p.exists() or p.read_text() != text]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        out_of_date = stale()
        for path in out_of_date:
            print(f"out of date: {path} (run `make schemas`)")
        return 1 if out_of_date else 0
    for path in write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
