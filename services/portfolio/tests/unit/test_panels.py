"""Panels 1 and 2 and the timeline as pure functions over rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from portfolio import samples as s
from portfolio.domain.panels import bucket_of, obligation_completion, renewal_pipeline, state_of
from portfolio.domain.projections import project_decision, project_obligation, project_opportunity, project_snapshot
from portfolio.domain.rows import ContractRow, DecisionRow, ObligationRow, RenewalRow
from portfolio.domain.views import Filters

from contract_schema import ContractStatus, Person
from contract_schema.renewal import RenewalDecisionKind


def contract(**kw: object) -> ContractRow:
    row = project_snapshot(s.envelope(s.snapshot(**kw)), "t").rows[0]  # type: ignore[arg-type]
    assert isinstance(row, ContractRow)
    return row


def renewal(cid: str, decision: str | None = None) -> RenewalRow:
    row = project_opportunity(s.envelope(s.opportunity(cid, decision=decision)), "t").rows[0]
    assert isinstance(row, RenewalRow)
    return row


def decided(cid: str, kind: RenewalDecisionKind) -> DecisionRow:
    row = project_decision(s.envelope(s.decision(cid, kind=kind)), "t").rows[0]
    assert isinstance(row, DecisionRow)
    return row


def test_buckets_by_days_to_the_notice_deadline() -> None:
    assert [bucket_of(d) for d in (-1, 0, 30, 31, 60, 61, 90, 91, 120, 121)] == [
        None, "0-30", "0-30", "31-60", "31-60", "61-90", "61-90", "91-120", "91-120", None]


def test_pipeline_splits_value_per_currency_into_at_risk_secured_and_walking_away() -> None:
    contracts = [
        contract(contract_id="C-1", days_to_deadline=10, value="1000"),
        contract(contract_id="C-2", days_to_deadline=20, value="2000"),
        contract(contract_id="C-3", days_to_deadline=25, value="4000"),
        contract(contract_id="C-4", days_to_deadline=40, value="500", currency="USD"),
        contract(contract_id="C-5", days_to_deadline=200, value="9"),  # outside the 120 days
        contract(contract_id="C-6", days_to_deadline=5, value="9", status=ContractStatus.TERMINATED),
    ]
    view = renewal_pipeline(contracts, [renewal("C-1"), renewal("C-3", decision="terminate")],
                            [decided("C-2", RenewalDecisionKind.RENEW)], s.TODAY, Filters())
    first = view.buckets[0]
    assert first.bucket == "0-30" and first.contracts == 3
    (eur,) = first.money
    assert (eur.currency, eur.total, eur.at_risk, eur.secured, eur.walking_away) == (
        "EUR", Decimal(7000), Decimal(1000), Decimal(2000), Decimal(4000))
    assert [(m.currency, m.total) for m in view.totals] == [("EUR", Decimal(7000)), ("USD", Decimal(500))]
    assert [r.contract_id for r in view.rows] == ["C-1", "C-2", "C-3", "C-4"]
    assert view.rows[0].crm_stage == "60d" and view.rows[1].decision == "renew"


def test_a_decision_event_overrides_the_opportunitys_own_field() -> None:
    view = renewal_pipeline([contract()], [renewal("C-1", decision="terminate")],
                            [decided("C-1", RenewalDecisionKind.RENEW)], s.TODAY, Filters())
    assert view.rows[0].decision == "renew" and view.totals[0].secured == Decimal(365000)


def test_auto_renewal_without_a_notice_period_is_flagged() -> None:
    view = renewal_pipeline([contract(contract_id="C-1", auto_renew=True, notice=0),
                             contract(contract_id="C-2", auto_renew=True, notice=30)], [], [], s.TODAY, Filters())
    assert view.untracked_notice == 1
    assert [r.untracked_notice for r in view.rows] == [True, False]


def test_filters_by_owner_counterparty_type_and_tag() -> None:
    me = Person(name="Me", email="me@example.com")
    contracts = [contract(contract_id="C-1", owner=me, tags=("it",)), contract(contract_id="C-2", party="globex"),
                 contract(contract_id="C-3", contract_type="nda")]
    ids = {f: [r.contract_id for r in renewal_pipeline(contracts, [], [], s.TODAY, Filters(**{f: v})).rows]
           for f, v in (("owner", "ME@example.com"), ("counterparty", "globex"), ("contract_type", "nda"),
                        ("tag", "it"))}
    assert ids == {"owner": ["C-1"], "counterparty": ["C-2"], "contract_type": ["C-3"], "tag": ["C-1"]}


def obligation(event: object) -> ObligationRow:
    row = project_obligation(s.envelope(event), "t").rows[0]  # type: ignore[arg-type]
    assert isinstance(row, ObligationRow)
    return row


def test_obligation_states() -> None:
    now = s.T0 + timedelta(days=1)
    assert state_of(obligation(s.completed(on_time=True)), now) == "on_time"
    assert state_of(obligation(s.completed(on_time=False)), now) == "late"
    assert state_of(obligation(s.overdue()), now) == "overdue"
    assert state_of(obligation(s.scheduled(due_in_days=0.5)), now) == "overdue"  # past due, not yet reported
    assert state_of(obligation(s.scheduled(due_in_days=3)), now) == "open"


def test_completion_per_counterparty_and_type_with_rates_and_what_falls_due() -> None:
    contracts = [contract(contract_id="C-1", party="acme"), contract(contract_id="C-2", party="globex",
                                                                     contract_type="sow")]
    rows = [obligation(s.completed("C-1", "a#1", on_time=True)), obligation(s.completed("C-1", "a#2", on_time=False)),
            obligation(s.overdue("C-1", "a#3")), obligation(s.scheduled("C-2", "b#1", due_in_days=5)),
            obligation(s.scheduled("C-2", "b#2", due_in_days=20)),
            obligation(s.scheduled("C-2", "b#3", due_in_days=60))]
    view = obligation_completion(contracts, rows, s.T0, Filters())
    acme, globex = view.by_counterparty
    assert (acme.key, acme.on_time, acme.late, acme.overdue, acme.open) == ("acme", 1, 1, 1, 0)
    assert acme.completion_rate == Decimal("0.6667") and acme.on_time_rate == Decimal("0.5000")
    assert (globex.open, globex.completion_rate, globex.on_time_rate) == (3, None, None)
    assert [c.key for c in view.by_contract_type] == ["msa", "sow"]
    assert (view.due_next_7_days, view.due_next_30_days) == (1, 2)
    assert [d.instance_id for d in view.due_soon] == ["b#1", "b#2"]
    only_globex = obligation_completion(contracts, rows, s.T0, Filters(counterparty="globex"))
    assert [c.key for c in only_globex.by_counterparty] == ["globex"]
