from __future__ import annotations

from mesh_common.http_guard import MAX_ECHO_CHARS, bad_text, field_of, truncate


def test_field_of_names_the_field_without_the_source() -> None:
    assert field_of(("body", "terms", "rate_card", 1, "valid_from")) == "terms.rate_card[1].valid_from"
    assert field_of(("query", "owner")) == "owner"
    assert field_of(("body",)) == "body"
    assert field_of(()) == "body"


def test_bad_text_finds_every_string_and_key_postgresql_cannot_hold() -> None:
    data = {"title": "a\x00", "tags": ["ok", "b\x00"], "party": {"name": "\ud800"}, "k\x00": 1, "n": 5}
    found = dict(bad_text(data))
    assert sorted(found) == ["k\x00", "party.name", "tags[1]", "title"]
    assert "surrogate" in found["party.name"] and "NUL" in found["title"]
    assert list(bad_text({"clean": ["x", {"y": "zé"}]})) == []


def test_truncate_keeps_small_inputs_and_cuts_large_ones() -> None:
    assert truncate(5) == 5 and truncate("short") == "short" and truncate(None) is None
    cut = truncate("x" * 1_000_000)
    assert isinstance(cut, str) and len(cut) < MAX_ECHO_CHARS + 40 and cut.endswith("(1000000 chars)")
    assert len(truncate({"big": "y" * 10_000})) < MAX_ECHO_CHARS + 40
