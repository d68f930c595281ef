"""The pure projections: what each event contributes, and merges that do not depend on arrival order."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from portfolio import samples as s
from portfolio.domain.projections import (
    merge,
    project_decision,
    project_obligation,
    project_opportunity,
    project_snapshot,
    row_key,
)
from portfolio.domain.rows import ContractRow, ObligationRow

from contract_schema.obligation import ObligationWaived

TOPIC = "clm.contract.state.v1"


def test_a_snapshot_becomes_its_contract_row_with_the_annual_value_and_the_notice_deadline() -> None:
    snap = s.snapshot(days_to_deadline=45, notice=30, value="730000")
    (row,) = project_snapshot(s.envelope(snap), TOPIC).rows
    assert isinstance(row, ContractRow)
    assert row.notice_deadline == s.TODAY + timedelta(days=45)
    assert row.annual_value == Decimal("730000")  # a 365-day term
    assert (row.counterparty_id, row.owner.email, row.currency) == ("acme", "olivia@example.com", "EUR")
    assert row_key(row) == ("contracts", "tenant-a", "C-1")


def test_an_evergreen_contract_has_no_deadline_and_its_value_as_given() -> None:
    snap = s.snapshot()
    terms = snap.current.model_copy(update={"end_date": None})
    (row,) = project_snapshot(s.envelope(snap.model_copy(update={"versions": (terms,)})), TOPIC).rows
    assert isinstance(row, ContractRow)
    assert row.notice_deadline is None and row.annual_value == Decimal("365000")


def test_the_event_entry_keeps_source_id_and_contract_for_the_timeline() -> None:
    env = s.envelope(s.decision(), event_id="d-1")
    p = project_decision(env, "crm.renewal.decision.v1")
    assert (p.entry.source, p.entry.id, p.entry.contract_id, p.entry.tenant_id) == (s.SOURCE, "d-1", "C-1", "tenant-a")
    assert p.entry.summary == "renewal decision: renew by cfo"


def test_the_newer_snapshot_wins_whichever_arrives_first() -> None:
    old = project_snapshot(s.envelope(s.snapshot(value="100")), TOPIC).rows[0]
    new = project_snapshot(s.envelope(s.snapshot(value="200", at=s.T0 + timedelta(hours=1))), TOPIC).rows[0]
    assert merge(merge(None, old), new) == new
    assert merge(merge(None, new), old) == new


def test_the_newer_opportunity_wins() -> None:
    a = project_opportunity(s.envelope(s.opportunity(stage=s.RenewalStage.DAYS_90)), "t").rows[0]
    b = project_opportunity(s.envelope(s.opportunity(stage=s.RenewalStage.DAYS_60, at=s.T0 + timedelta(days=30))),
                            "t").rows[0]
    assert merge(a, b) == merge(b, a) == b


def _obligation_rows() -> list[ObligationRow]:
    events = [s.scheduled(at=s.T0), s.overdue(at=s.T0 + timedelta(days=11)),
              s.completed(on_time=False, at=s.T0 + timedelta(days=12))]
    rows = [project_obligation(s.envelope(e), "clm.obligation.events.v1").rows[0] for e in events]
    return [r for r in rows if isinstance(r, ObligationRow)]


def test_an_obligation_merges_to_the_same_row_in_every_order() -> None:
    results = set()
    for order in itertools.permutations(_obligation_rows()):
        row = None
        for r in order:
            row = merge(row, r)
        assert isinstance(row, ObligationRow)
        results.add(row.model_dump_json())
        assert row.overdue and row.completed_at == s.T0 + timedelta(days=12) and row.on_time is False
    assert len(results) == 1


def test_a_waiver_closes_the_obligation_and_stays_closed() -> None:
    waived = ObligationWaived(**s.scheduled(at=s.T0 + timedelta(days=1)).model_dump(), reason="not needed")
    (w,) = project_obligation(s.envelope(waived), "t").rows
    (later,) = project_obligation(s.envelope(s.scheduled(at=s.T0 + timedelta(days=2))), "t").rows
    assert isinstance(w, ObligationRow) and isinstance(later, ObligationRow)
    merged = merge(w, later)
    assert isinstance(merged, ObligationRow) and merged.closed == "waived"


def test_sla_events_go_to_the_timeline_only() -> None:
    from contract_schema.obligation import SlaMeasured

    base = s.scheduled().model_dump()
    sla = SlaMeasured(**base, metric="availability", window_start=s.T0, window_end=s.T0 + timedelta(days=30),
                      measured=Decimal("99.5"), target=Decimal("99.9"), met=False)
    p = project_obligation(s.envelope(sla), "clm.obligation.events.v1")
    assert p.rows == () and p.entry.type == "SlaMeasured"
