"""Start-up and shutdown of a service process, written once: JSON logs that carry the trace id,
the clock (wall or topic), a ticker for time-driven work, consumer-lag statistics, background
threads whose death ends the process, and the HTTP server that stops on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from opentelemetry import trace

from contract_schema.topics import CLOCK

from .clock import EPOCH, Clock, ClockFollower, ManualClock, SystemClock
from .ops import CONSUMER_LAG
from .settings import KafkaSettings, ServiceSettings

log = logging.getLogger(__name__)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace id so logs and traces join up."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        span = trace.get_current_span().get_span_context()
        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                                 "service": self.service, "msg": record.getMessage()}
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(service: str, level: str = "INFO") -> None:
    """Every service logs the same way: JSON lines on stderr (MESH_LOG_LEVEL)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def make_clock(service: ServiceSettings, kafka: KafkaSettings, *, group_id: str, topic: str = CLOCK.name,
               clock_id: str = "mesh", on_advance: Callable[[datetime], None] | None = None,
               ) -> tuple[Clock, ClockFollower | None]:
    """The wall clock, or (MESH_CLOCK=topic) a clock that follows ClockAdvanced on the clock topic.

    The follower is started; callers that must not act before the mesh's time wait on
    `follower.wait_caught_up(...)` themselves (how long is theirs to say)."""
    if service.clock != "topic":
        return SystemClock(), None
    clock = ManualClock(EPOCH)
    follower = ClockFollower(clock, kafka.consumer(group_id), topic=topic, clock_id=clock_id, on_advance=on_advance)
    return clock, follower.start()


class Ticker:
    """Runs `work` when poked (e.g. on every clock advance), when a wake-up it was asked for is due, or every
    `interval` seconds, in its own thread.

    `wake_within(seconds)` asks for a run no later than that (the earliest request wins): work that is due at a
    known wall-clock time (a retry, a lease running out) must not wait for the interval or for the next clock
    advance, which may never come once the mesh's clock stops moving."""

    def __init__(self, work: Callable[[], object], interval: float, name: str = "ticker") -> None:
        self.work, self.interval = work, interval
        self._wake = threading.Event()  # poked: run now
        self._changed = threading.Event()  # poked, stopped or a wake-up asked for: the sleeper looks again
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._due: float | None = None  # monotonic time of the earliest wake-up asked for
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)

    def poke(self, *_: object) -> None:
        self._wake.set()
        self._changed.set()

    def wake_within(self, seconds: float) -> None:
        at = time.monotonic() + max(0.0, seconds)
        with self._lock:
            if self._due is None or at < self._due:
                self._due = at
        self._changed.set()

    def start(self) -> Ticker:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.poke()

    def _sleep(self) -> None:
        """Until poked, the earliest wake-up asked for, or the interval, whichever comes first."""
        deadline = time.monotonic() + self.interval
        while not self._stop.is_set():
            self._changed.clear()
            now = time.monotonic()
            with self._lock:
                until = deadline if self._due is None else min(deadline, self._due)
                if self._wake.is_set() or now >= until:
                    self._wake.clear()
                    if self._due is not None and self._due <= now:
                        self._due = None  # this run is the one asked for
                    return
            self._changed.wait(until - now)

    def run(self) -> None:
        while not self._stop.is_set():
            self._sleep()
            if self._stop.is_set():
                return
            try:
                self.work()
            except Exception:  # a failed tick is retried on the next one; never kill the thread
                log.exception("tick failed")


def lag_recorder(service: str) -> Callable[[str], None]:
    """A librdkafka `stats_cb` that sets the shared mesh_consumer_lag gauge per assigned partition."""
    def record(stats_json: str) -> None:
        stats = json.loads(stats_json)
        for topic, info in stats.get("topics", {}).items():
            for partition, p in info.get("partitions", {}).items():
                if partition != "-1" and p.get("consumer_lag", -1) >= 0:
                    CONSUMER_LAG.labels(service, topic, partition).set(p["consumer_lag"])
    return record


def guarded_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A background thread whose death ends the process: a half-running worker is worse than a restart."""
    def run() -> None:
        try:
            target()
        except BaseException:
            log.exception("%s died; exiting so the supervisor restarts the service", name)
            os._exit(3)
    return threading.Thread(target=run, name=name, daemon=True)


def serve(app: Any, service: ServiceSettings, *, on_stop: Iterable[Callable[[], object]] = (),
          lifespan: Literal["auto", "on", "off"] = "off", log_level: str = "warning") -> None:
    """Serve the HTTP app until SIGTERM or SIGINT, then run `on_stop` in order.

    uvicorn owns the signals: it stops accepting, finishes the requests in flight and returns."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=service.http_host, port=service.http_port,
                                           log_level=log_level, lifespan=lifespan))
    try:
        server.run()
    finally:
        for stop in on_stop:
            try:
                stop()
            except Exception:  # one failed step must not keep the others from running
                log.exception("shutdown step failed")
