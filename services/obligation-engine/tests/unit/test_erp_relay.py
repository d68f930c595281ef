"""ErpRelay (docs/adr/0012): rounds outside the agents, backoff, Retry-After, one round of a release at a time."""

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal

from obligation_engine.adapters.erp import ErpRelay, HeldRelease, RoundOutcome

from contract_schema import Origin, ReleaseMilestoneBilling
from mesh_common.delivery import CircuitBreaker, DeliveryError

COMMAND = ReleaseMilestoneBilling(contract_id="c1", tenant_id="t1", obligation_id="go-live", erp_vendor_id="V-1",
                                  origin=Origin.CONTRACT, occurred_at=datetime(2030, 1, 1, tzinfo=UTC),
                                  amount=Decimal("10.00"), currency="EUR",
                                  completed_at=datetime(2030, 1, 1, tzinfo=UTC))


class FakeErp:
    def __init__(self, *answers: BaseException | None) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, float]] = []
        self.breaker = CircuitBreaker("test", threshold=100)

    async def release(self, command: ReleaseMilestoneBilling, key: str) -> None:
        self.calls.append((key, time.monotonic()))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


async def _run(erp: FakeErp, report_delay: float, until_outcomes: int) -> list[RoundOutcome]:
    outcomes: list[RoundOutcome] = []

    async def report(o: RoundOutcome) -> None:
        await asyncio.sleep(report_delay)  # the broker's ack of the outcome record
        outcomes.append(o)

    relay = ErpRelay(erp, report, base=0.02, cap=0.05)  # type: ignore[arg-type]
    task = asyncio.ensure_future(relay.run())
    relay.hold(HeldRelease("c1", 0, "cmd-1", COMMAND))
    try:
        deadline = time.monotonic() + 5
        while len(outcomes) < until_outcomes and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    return outcomes


def test_a_failed_round_is_retried_even_when_its_report_outlasts_the_backoff() -> None:
    erp = FakeErp(DeliveryError("HTTP 503", permanent=False))
    outcomes = asyncio.run(_run(erp, report_delay=0.3, until_outcomes=2))
    assert [o.ok for o in outcomes] == [False, True]
    assert [k for k, _ in erp.calls] == ["cmd-1", "cmd-1"]  # the same key on every try, once accepted


def test_retry_after_holds_back_the_next_call() -> None:
    erp = FakeErp(DeliveryError("HTTP 429", permanent=False, status=429, retry_after=0.5))
    outcomes = asyncio.run(_run(erp, report_delay=0.0, until_outcomes=2))
    assert [o.ok for o in outcomes] == [False, True]
    assert erp.calls[1][1] - erp.calls[0][1] >= 0.5


def test_a_permanent_answer_is_not_retried() -> None:
    erp = FakeErp(DeliveryError("HTTP 400", permanent=True, status=400))
    outcomes = asyncio.run(_run(erp, report_delay=0.0, until_outcomes=1))
    assert [(o.ok, o.permanent) for o in outcomes] == [(False, True)]
    assert len(erp.calls) == 1
