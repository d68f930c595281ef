"""CloudEvents binary-mode codec: every event round-trips; bad records give one typed error."""

from __future__ import annotations

import pytest

import contract_schema as cs
from contract_schema.base import Event

from .samples import NOW, all_samples, snapshot


@pytest.mark.parametrize("event", all_samples(), ids=lambda e: type(e).__name__)
def test_round_trip(event: Event) -> None:
    traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    record = cs.encode(event, source="/test", event_id="evt-1", time=NOW, traceparent=traceparent)
    envelope = cs.decode(record.value, record.headers)
    assert envelope.event == event
    assert type(envelope.event) is type(event)
    assert envelope.id == "evt-1"
    assert envelope.time == NOW
    assert envelope.traceparent is not None and envelope.traceparent.startswith("00-aaaa")
    assert record.key == event.key.encode()


def test_headers_follow_cloudevents_binary_mode() -> None:
    record = cs.encode(snapshot(), source="/contract-registry", event_id="e-9", time=NOW)
    headers = dict(record.headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"contractmesh.ContractSnapshot"
    assert headers["ce_source"] == b"/contract-registry"
    assert headers["ce_subject"] == b"C-1"
    assert headers["ce_time"] == NOW.isoformat().encode()


def _good() -> cs.Record:
    return cs.encode(snapshot(), source="/test", event_id="e-1", time=NOW)


@pytest.mark.parametrize(
    ("value", "headers", "expected"),
    [
        (b"\x00\xffnot json", None, "value is not JSON"),
        (b"[1,2]", None, "not a JSON object"),
        (b'{"contract_id": "C-1"}', None, "ContractSnapshot."),
        (None, None, "no value"),
        (b"{}", [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/s"), ("ce_type", b"nope")],
         "unknown ce_type 'nope'"),
        (b"{}", [("ce_id", b"x")], "missing CloudEvents header 'ce_specversion'"),
        (b"{}", [("ce_specversion", b"0.3"), ("ce_id", b"x"), ("ce_source", b"/s"), ("ce_type", b"t")],
         "unsupported ce_specversion"),
    ],
)
def test_bad_records_raise_decode_error_with_reason(value: bytes | None, headers: list[tuple[str, bytes]] | None,
                                                    expected: str) -> None:
    with pytest.raises(cs.DecodeError) as info:
        cs.decode(value, headers if headers is not None else _good().headers)
    assert expected in info.value.reason


def test_invalid_field_names_the_field_path() -> None:
    record = _good()
    bad = record.value.replace(b'"currency":"EUR"', b'"currency":"EURO"', 1)
    with pytest.raises(cs.DecodeError) as info:
        cs.decode(bad, record.headers)
    assert info.value.field_path is not None and info.value.field_path.endswith("currency")


def test_bad_ce_time_is_a_decode_error() -> None:
    record = _good()
    headers = [(k, v) for k, v in record.headers if k != "ce_time"] + [("ce_time", b"yesterday")]
    with pytest.raises(cs.DecodeError, match="ce_time"):
        cs.decode(record.value, headers)


def test_header_dict_form_accepted() -> None:
    record = _good()
    assert cs.decode(record.value, dict(record.headers)).event == snapshot()
