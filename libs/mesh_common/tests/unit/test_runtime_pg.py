"""The shared runtime and PostgreSQL helpers that need no broker or database."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

from contract_schema.sources import source_of
from mesh_common.clock import SystemClock
from mesh_common.pg import libpq_url
from mesh_common.runtime import JsonFormatter, Ticker, lag_recorder, make_clock
from mesh_common.settings import KafkaSettings, ServiceSettings
from mesh_testing import wait_for


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("svc", logging.WARNING, __file__, 1, msg, (), None)


def test_json_log_line_names_the_service_and_the_active_trace() -> None:
    formatter = JsonFormatter("notifier")
    plain = json.loads(formatter.format(_record("no span")))
    assert plain["service"] == "notifier" and plain["msg"] == "no span" and "trace_id" not in plain
    with TracerProvider().get_tracer("t").start_as_current_span("work") as span:
        traced = json.loads(formatter.format(_record("in a span")))
    assert traced["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert traced["level"] == "WARNING"


def test_system_clock_needs_no_follower() -> None:
    clock, follower = make_clock(ServiceSettings(clock="system"), KafkaSettings(), group_id="g")
    assert isinstance(clock, SystemClock) and follower is None


def test_ticker_runs_its_work_when_poked_and_survives_a_failure() -> None:
    ran = threading.Event()
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first tick fails")
        ran.set()

    ticker = Ticker(work, interval=3600).start()
    try:
        ticker.poke()
        wait_for(lambda: calls, timeout=5, message="the first tick")
        ticker.poke()
        assert ran.wait(5), "the ticker stopped after a failed tick"
    finally:
        ticker.stop()
        ticker.thread.join(5)
    assert not ticker.thread.is_alive()


def test_ticker_runs_when_a_wake_up_it_was_asked_for_is_due_without_a_poke() -> None:
    runs: list[float] = []
    ticker = Ticker(lambda: runs.append(time.monotonic()), interval=3600).start()
    try:
        asked = time.monotonic()
        ticker.wake_within(0.3)
        ticker.wake_within(30)  # a later request does not postpone the earlier one
        wait_for(lambda: runs, timeout=5, message="the run asked for")
        assert runs[0] - asked >= 0.25
        ticker.wake_within(0)  # asked for from inside a run or any thread: at once
        wait_for(lambda: len(runs) == 2, timeout=5, message="the second run")
    finally:
        ticker.stop()
        ticker.thread.join(5)
    assert not ticker.thread.is_alive()


def test_lag_recorder_ignores_the_unassigned_partition() -> None:
    from mesh_common.ops import CONSUMER_LAG

    lag_recorder("svc-test")(json.dumps({"topics": {"t": {"partitions": {
        "-1": {"consumer_lag": 9}, "0": {"consumer_lag": 4}, "1": {"consumer_lag": -1}}}}}))
    assert CONSUMER_LAG.labels("svc-test", "t", "0")._value.get() == 4


def test_libpq_url_drops_the_sqlalchemy_driver() -> None:
    assert libpq_url("postgresql+psycopg://u:p@h:5/db") == "postgresql://u:p@h:5/db"
    assert libpq_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_every_source_follows_one_rule() -> None:
    assert source_of("renewal-sync") == "/contract-mesh/renewal-sync"
    with pytest.raises(ValueError):
        source_of("Renewal Sync")
