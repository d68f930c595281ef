"""Background expiry sweep: wakes periodically (and on start, catching up after downtime)."""

from __future__ import annotations

import logging
import threading

from ..service import Registry

log = logging.getLogger(__name__)


class ExpirySweeper:
    def __init__(self, registry: Registry, interval_seconds: float) -> None:
        self.registry = registry
        self.interval = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="registry-expiry", daemon=True)
        self._thread.start()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                changed = self.registry.expire_due()
                if changed:
                    log.info("expired or auto-renewed %d contracts", changed)
            except Exception:  # the database may be away for a while; try again next round
                log.exception("expiry sweep failed")
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
