from __future__ import annotations

from mesh_common.http_guard import MAX_ECHO_CHARS, field_of, nul_paths, truncate


def test_field_of_names_the_field_without_the_source() -> None:
    assert field_of(("body", "terms", "rate_card", 1, "valid_from")) == "terms.rate_card[1].valid_from"
    assert field_of(("query", "owner")) == "owner"
    assert field_of(("body",)) == "body"
    assert field_of(()) == "body"


def test_nul_paths_finds_every_string_and_key_holding_nul() -> None:
    data = {"title": "a\x00", "tags": ["ok", "b\x00"], "party": {"name": "\x00"}, "k\x00": 1, "n": 5}
    assert sorted(nul_paths(data)) == ["k\x00", "party.name", "tags[1]", "title"]
    assert list(nul_paths({"clean": ["x", {"y": "z"}]})) == []


def test_truncate_keeps_small_inputs_and_cuts_large_ones() -> None:
    assert truncate(5) == 5 and truncate("short") == "short" and truncate(None) is None
    cut = truncate("x" * 1_000_000)
    assert isinstance(cut, str) and len(cut) < MAX_ECHO_CHARS + 40 and cut.endswith("(1000000 chars)")
    assert len(truncate({"big": "y" * 10_000})) < MAX_ECHO_CHARS + 40
