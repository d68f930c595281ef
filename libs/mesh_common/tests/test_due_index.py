from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mesh_common.due_index import DueIndex

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_pops_only_what_is_due_in_due_order() -> None:
    index: DueIndex[str] = DueIndex()
    index.schedule("b", T0 + timedelta(hours=2))
    index.schedule("a", T0 + timedelta(hours=1))
    index.schedule("c", T0 + timedelta(hours=3))
    assert list(index.pop_due(T0)) == []
    assert list(index.pop_due(T0 + timedelta(hours=2))) == [("a", T0 + timedelta(hours=1)),
                                                            ("b", T0 + timedelta(hours=2))]
    assert len(index) == 1 and "c" in index


def test_reschedule_supersedes_and_cancel_removes() -> None:
    index: DueIndex[str] = DueIndex()
    index.schedule("x", T0 + timedelta(hours=1))
    index.schedule("x", T0 + timedelta(hours=5))  # moved later: must not fire at +1h
    index.schedule("y", T0 + timedelta(hours=1))
    index.cancel("y")
    assert list(index.pop_due(T0 + timedelta(hours=4))) == []
    assert index.next_due() == T0 + timedelta(hours=5)
    assert list(index.pop_due(T0 + timedelta(hours=5))) == [("x", T0 + timedelta(hours=5))]
    assert len(index) == 0 and index.next_due() is None


def test_each_key_fires_once_even_after_cancel_and_reschedule_at_same_time() -> None:
    index: DueIndex[str] = DueIndex()
    index.schedule("k", T0)
    index.cancel("k")
    index.schedule("k", T0)
    assert list(index.pop_due(T0)) == [("k", T0)]
    assert list(index.pop_due(T0 + timedelta(days=1))) == []


def test_stale_entries_are_compacted_so_heap_stays_bounded() -> None:
    index: DueIndex[int] = DueIndex()
    for round_ in range(50):
        for key in range(10):
            index.schedule(key, T0 + timedelta(minutes=round_ * 10 + key))
    assert len(index) == 10
    assert len(index._heap) <= 2 * 10 + 64  # noqa: SLF001 - the bound is the point of the test
