"""Pure parts of the campaign: verdict comparison, percentiles, the flood's records, the report table."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from invoice_validator import samples
from invoice_validator.domain.model import BillingState, ObligationView
from invoice_validator.domain.validate import validate_invoice

from contract_schema.codec import DecodeError, decode
from contract_schema.contract import ContractSnapshot, ContractStatus
from contract_schema.invoice import InvoiceValidated, LineVerdict, VerdictStatus
from contract_schema.topics import INVOICE_RECEIVED
from mesh_chaos.bodies import contract_body
from mesh_chaos.campaign import quiesce, render
from mesh_chaos.checker import Checker, p99, same_verdict
from mesh_chaos.flood import INBOUND, malformed
from mesh_chaos.history import Seen


def verdict(status: VerdictStatus, codes: tuple[str, ...], line_codes: tuple[str, ...] = ()) -> InvoiceValidated:
    line = LineVerdict(line_no=1, status=status, item_code="CONSULT", billed_unit_price=Decimal("100"),
                       billed_amount=Decimal("100"), reason_codes=line_codes)
    return InvoiceValidated(invoice_id="I-1", tenant_id="t", vendor_id="v", invoice_number="N1", status=status,
                            currency="EUR", lines=(line,), reason_codes=codes, total_billed=Decimal("100"),
                            total_expected=Decimal("100"), validated_at=datetime(2031, 1, 1, tzinfo=UTC))


def test_same_verdict_compares_status_and_reasons_per_invoice_and_line() -> None:
    approved = verdict(VerdictStatus.APPROVED, ())
    assert same_verdict(approved, verdict(VerdictStatus.APPROVED, ()))
    assert not same_verdict(approved, verdict(VerdictStatus.REJECTED, ("PRICE_ABOVE_CONTRACT",)))
    rejected = VerdictStatus.REJECTED
    assert not same_verdict(verdict(rejected, ("X",), ("A",)), verdict(rejected, ("X",), ("B",)))


def test_p99() -> None:
    assert p99([]) is None
    assert p99([float(i) for i in range(1, 101)]) == 100.0
    assert p99([0.5]) == 0.5


@pytest.mark.parametrize("n", [0, 1])
def test_flood_records_never_decode(n: int) -> None:
    value, headers = malformed(n, INVOICE_RECEIVED)
    with pytest.raises(DecodeError):
        decode(value, headers)
    assert len(INBOUND) == 7


def test_contract_bodies_are_seeded() -> None:
    a = contract_body("services", "1-1", 1, date(2031, 1, 6), Decimal("100.00"), "V", "o@x", random.Random(3))
    b = contract_body("services", "1-1", 1, date(2031, 1, 6), Decimal("100.00"), "V", "o@x", random.Random(3))
    assert a == b
    assert a["terms"]["rate_card"][0]["valid_to"] == a["terms"]["end_date"]


def test_render_names_every_figure_and_violation() -> None:
    data = {"seed": 1, "duration_seconds": 60.0, "rate": 2.0, "contracts": 3, "invoices": 9, "clock_end": "2031-02-01",
            "faults": {"kill:notifier": 2, "broker-kill": 1, "partner:crm:hang": 1}, "inputs": {"invoice": 9},
            "effects": {"ap.invoice.validated.v1": 9}, "redelivered": {}, "dead_letters": {}, "lost": 1,
            "duplicated": 0, "divergent": 0, "broken": 0, "max_recovery_seconds": 3.5, "quiesce_seconds": 12.0,
            "latency": {}, "violations": [{"check": "verdicts", "kind": "lost", "detail": "invoice I-9 has none"}]}
    text = render(data)
    assert "kill 2" in text and "broker-kill 1" in text and "crm:hang 1" in text
    assert "max recovery             | 3.5 s" in text
    assert "VIOLATION [verdicts/lost] invoice I-9 has none" in text


class _History:
    """The slice of History the verdict check reads: what was seen on each topic, in order."""

    def __init__(self, seen: list[Seen]) -> None:
        self.seen = seen

    def on(self, topic: str) -> list[Seen]:
        return [s for s in self.seen if s.topic == topic]


def _seen(topic: str, event: object, at: float) -> Seen:
    return Seen(topic=topic, partition=0, offset=0, ce_id=f"ce-{at}", ce_type=None, key=None,
                event=event, headers={}, at=at)  # type: ignore[arg-type]


def _verdict_violations(got_with: ContractSnapshot, states: list[tuple[float, ContractSnapshot]],
                        decided_at: float) -> list[str]:
    inv = samples.invoice("INV-R", contract_ref="C-R", vendor="V-C-R")
    got = validate_invoice(inv, got_with, obligations=ObligationView(), billing=BillingState(), duplicate_of=None,
                           now=inv.received_at).verdict
    seen = [_seen("clm.contract.state.v1", snap, at) for at, snap in states]
    seen += [_seen("ap.invoice.received.v1", inv, 1.5), _seen("ap.invoice.validated.v1", got, decided_at)]
    workload = SimpleNamespace(invoices={"INV-R": {"via": "kafka", "snapshot": states[0][1], "seq": 0}})
    checker = Checker(None, _History(seen), workload, [])  # type: ignore[arg-type]
    checker.verdicts()
    return [f"{v.kind}: {v.detail}" for v in checker.r.violations]


def test_a_verdict_given_with_a_termination_that_raced_the_invoice_is_not_divergent() -> None:
    """The validator decides with the state the invoice was sent after, or a newer one that reached it
    first: a termination in the same version, published before the verdict, is a right answer too."""
    active = samples.contract("C-R", vendor="V-C-R")
    terminated = active.model_copy(update={"status": ContractStatus.TERMINATED, "terminated_on": date(2026, 2, 1),
                                           "updated_at": active.updated_at + timedelta(minutes=1)})
    assert _verdict_violations(active, [(1.0, active), (2.0, terminated)], decided_at=3.0) == []
    assert _verdict_violations(terminated, [(1.0, active), (2.0, terminated)], decided_at=3.0) == []
    # A termination published only after the verdict was read cannot explain it.
    late = _verdict_violations(terminated, [(1.0, active), (4.0, terminated)], decided_at=3.0)
    assert len(late) == 1 and late[0].startswith("divergent: invoice INV-R"), late


class _SettlingHistory:
    """A history whose broker answers and whose records stopped, but whose engine group rebalances for
    `rebalancing` polls and then reads a backlog (its offsets move) for `catching_up` polls."""

    def __init__(self, rebalancing: int, catching_up: int) -> None:
        self.polls = 0
        self.rebalancing, self.catching_up = rebalancing, catching_up

    def broker_answers(self) -> bool:
        return True

    def last_read(self) -> float:
        return 0.0

    def on(self, topic: str) -> list[Seen]:
        return []

    def group_offsets(self, groups: list[str]) -> dict[str, tuple[tuple[str, int, int], ...] | None]:
        self.polls += 1
        if self.polls <= self.rebalancing:
            return {g: None for g in groups}
        offset = min(self.polls, self.rebalancing + self.catching_up)
        return {g: (("clm.contract.events.v1", 0, offset),) for g in groups}


def test_quiescence_waits_for_a_rebalancing_group_and_its_backlog_not_just_for_silence() -> None:
    history = _SettlingHistory(rebalancing=5, catching_up=5)
    workload = SimpleNamespace(pending_verdicts=lambda: 0)
    settled = quiesce(workload, history, ["obligation-engine"], bound=5.0, window=0.05, poll=0.01)  # type: ignore[arg-type]
    assert settled is not None
    assert history.polls > 10, f"settled after {history.polls} polls, while the group still rebalanced or read"


def test_quiescence_gives_up_on_a_group_that_never_stabilises() -> None:
    history = _SettlingHistory(rebalancing=10**9, catching_up=0)
    workload = SimpleNamespace(pending_verdicts=lambda: 0)
    assert quiesce(workload, history, ["obligation-engine"], bound=0.3, window=0.05, poll=0.01) is None  # type: ignore[arg-type]
