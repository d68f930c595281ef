"""Pure: which renewal stages the checker owes after ordinary ticks, a clock leap and a renewal."""

from __future__ import annotations

from datetime import date, timedelta

from mesh_chaos.checker import owed_stages

END = date(2031, 12, 31)
DEADLINE = END - timedelta(days=60)  # notice period 60 days: 120d stage on DEADLINE - 120


def days(first: date, last: date, step: int = 1) -> list[date]:
    return [first + timedelta(days=n) for n in range(0, (last - first).days + 1, step)]


def test_ordinary_ticks_owe_the_latest_stage_due() -> None:
    clocks = days(DEADLINE - timedelta(days=125), DEADLINE - timedelta(days=85))
    assert owed_stages(60, [END], clocks) == ["90d"]


def test_a_leap_over_several_stages_owes_only_the_last_of_them() -> None:
    before = DEADLINE - timedelta(days=130)  # no stage due yet
    clocks = [before, before + timedelta(days=2), DEADLINE + timedelta(days=5)]  # leap past 120d..30d and notice
    assert owed_stages(60, [END], clocks) == ["notice-deadline"]
    assert owed_stages(60, [END], clocks[:2]) == []


def test_a_leap_across_the_end_date_judges_each_term_at_its_own_last_tick() -> None:
    renewed_end = date(2032, 12, 31)
    before = DEADLINE - timedelta(days=100)  # 120d due, 90d not yet
    clocks = [before, END + timedelta(days=150)]  # crosses the end: the registry renews, term 2 runs
    assert owed_stages(60, [END, renewed_end], clocks) == ["120d"]
    # Far enough into term 2 that its 120d stage (notice deadline 2032-11-01, minus 120 days) is due too.
    late = clocks + [date(2032, 7, 20)]
    assert owed_stages(60, [END, renewed_end], late) == ["120d", "120d"]


def test_the_workload_leaps_when_the_nemesis_asks_and_never_after_its_last_step() -> None:
    import threading
    from types import SimpleNamespace

    from mesh_chaos.workload import START, Workload

    mesh = SimpleNamespace(procs={"contract-registry": SimpleNamespace(env={"AUTH_HS256_SECRET": "s" * 32})},
                           bootstrap="127.0.0.1:9")
    w = Workload(mesh, SimpleNamespace(on=lambda topic: []), seed=1)  # type: ignore[arg-type]
    published: list[date] = []
    w.set_clock = lambda: published.append(w.today)  # type: ignore[method-assign]
    try:
        got: list[str | None] = []
        asker = threading.Thread(target=lambda: got.append(w.request_leap(120, timeout=30)))
        asker.start()
        while asker.is_alive():
            w.apply_leap()  # the workload loop, between two operations
        assert got == [(START + timedelta(days=120)).isoformat()]
        assert published == [START + timedelta(days=120)] and w.leaps == [(START, START + timedelta(days=120))]
        w.apply_leap(last=True)
        assert w.request_leap(100, timeout=30) is None  # the run is over: refused at once, no leap
        assert w.today == START + timedelta(days=120)
    finally:
        w.http.close()
