"""Transitions of the contract aggregate: new snapshot plus the change event to publish."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from contract_registry.domain import contracts
from contract_registry.domain.model import Amendment, ContractDraft, Renewal, Termination
from contract_registry.domain.validation import BusinessRuleError
from contract_registry.examples import draft, terms

from contract_schema.base import Origin
from contract_schema.contract import (
    ContractAmended,
    ContractExpired,
    ContractSnapshot,
    ContractStatus,
    ContractTerminated,
    TierMode,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _active() -> ContractSnapshot:
    created = contracts.create(ContractDraft.model_validate(draft()), contract_id="c1", tenant_id="t1", now=NOW)
    return contracts.activate(created.snapshot, now=NOW).snapshot


def test_create_is_a_draft_with_version_1_and_no_change_event() -> None:
    change = contracts.create(ContractDraft.model_validate(draft()), contract_id="c1", tenant_id="t1", now=NOW)
    assert change.event is None
    assert change.snapshot.status is ContractStatus.DRAFT
    assert change.snapshot.current.version == 1
    assert change.snapshot.current.effective_from == date(2026, 2, 1)


def test_create_rejects_broken_rules() -> None:
    with pytest.raises(BusinessRuleError) as err:
        contracts.create(ContractDraft.model_validate(draft(terms=terms(end_date="2026-01-15"))),
                         contract_id="c1", tenant_id="t1", now=NOW)
    assert [v.field for v in err.value.violations] == ["terms.end_date"]


def test_amend_adds_a_version_and_summarises_changed_fields() -> None:
    snap = _active()
    amendment = Amendment.model_validate({"effective_from": "2026-04-01", "reason": "price uplift",
                                          "terms": terms(total_value="150000.00"), "tags": ["it"]})
    change = contracts.amend(snap, amendment, now=NOW)
    assert isinstance(change.event, ContractAmended)
    assert [v.version for v in change.snapshot.versions] == [1, 2]
    assert {c.field for c in change.event.changes} == {"total_value", "tags"}
    assert change.snapshot.tags == ("it",)
    assert change.snapshot.terms_on(date(2026, 3, 15)).version == 1  # type: ignore[union-attr]
    assert change.snapshot.terms_on(date(2026, 4, 1)).version == 2  # type: ignore[union-attr]


def test_a_tier_mode_amendment_is_a_new_version_and_the_old_one_keeps_volume() -> None:
    graduated = terms()
    graduated["rate_card"][0]["tier_mode"] = "graduated"
    amendment = Amendment.model_validate({"effective_from": "2026-04-01", "reason": "graduated pricing",
                                          "terms": graduated})
    change = contracts.amend(_active(), amendment, now=NOW)
    assert isinstance(change.event, ContractAmended)
    [changed] = change.event.changes
    assert changed.field == "rate_card"
    assert [line["tier_mode"] for line in changed.old] == ["volume", "volume"]  # type: ignore[union-attr]
    assert [line["tier_mode"] for line in changed.new] == ["graduated", "volume"]  # type: ignore[union-attr]
    before, after = (change.snapshot.terms_on(date(2026, d, 1)) for d in (3, 4))
    assert before is not None and before.rate_card[0].tier_mode is TierMode.VOLUME
    assert after is not None and after.rate_card[0].tier_mode is TierMode.GRADUATED


def test_an_amendment_with_incoherent_tiers_is_rejected_naming_the_band() -> None:
    broken = terms()
    broken["rate_card"][0]["tiers"][1]["from_quantity"] = "0"
    amendment = Amendment.model_validate({"effective_from": "2026-04-01", "reason": "x", "terms": broken})
    with pytest.raises(BusinessRuleError) as err:
        contracts.amend(_active(), amendment, now=NOW)
    assert [v.field for v in err.value.violations] == ["terms.rate_card[0].tiers[1].from_quantity"]


def test_amend_effective_before_current_version_is_rejected() -> None:
    amendment = Amendment.model_validate({"effective_from": "2026-01-01", "reason": "x", "terms": terms()})
    with pytest.raises(BusinessRuleError) as err:
        contracts.amend(_active(), amendment, now=NOW)
    assert [v.field for v in err.value.violations] == ["effective_from"]


def test_activate_twice_is_an_invalid_transition() -> None:
    with pytest.raises(contracts.InvalidTransition):
        contracts.activate(_active(), now=NOW)


def test_terminate_then_amend_is_invalid() -> None:
    change = contracts.terminate(_active(), Termination(terminated_on=date(2026, 9, 30), reason="breach"), now=NOW)
    assert isinstance(change.event, ContractTerminated)
    assert change.snapshot.status is ContractStatus.TERMINATED
    assert change.snapshot.terminated_on == date(2026, 9, 30)
    with pytest.raises(contracts.InvalidTransition):
        contracts.amend(change.snapshot, Amendment.model_validate(
            {"effective_from": "2026-10-01", "reason": "x", "terms": terms()}), now=NOW)


def test_renew_adds_a_version_after_the_end_date() -> None:
    change = contracts.renew(_active(), Renewal(), now=NOW)
    new = change.snapshot.current
    assert (new.version, new.effective_from, new.end_date) == (2, date(2027, 2, 1), date(2028, 1, 31))
    assert change.snapshot.status is ContractStatus.RENEWED


def test_milestone_completion_event_originates_on_the_contract_side() -> None:
    state, event = contracts.complete_milestone(_active(), "M1", now=NOW, evidence_ref="doc-1")
    assert state.status == "completed"
    assert event.origin is Origin.CONTRACT and event.source_system == "contract-registry"
    with pytest.raises(contracts.UnknownObligation):
        contracts.complete_milestone(_active(), "nope", now=NOW, evidence_ref=None)


def test_as_of_keeps_only_versions_in_force() -> None:
    amended = contracts.amend(_active(), Amendment.model_validate(
        {"effective_from": "2026-04-01", "reason": "x", "terms": terms(total_value="1")}), now=NOW).snapshot
    assert contracts.as_of(amended, date(2026, 1, 1)) is None
    assert contracts.as_of(amended, date(2026, 3, 31)).current.version == 1  # type: ignore[union-attr]
    assert contracts.as_of(amended, date(2026, 4, 1)).current.version == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(("start", "months", "expected"), [
    (date(2026, 1, 31), 1, date(2026, 2, 28)), (date(2026, 11, 30), 3, date(2027, 2, 28)),
    (date(2027, 1, 31), 12, date(2028, 1, 31))])
def test_add_months_clamps_to_month_end(start: date, months: int, expected: date) -> None:
    assert contracts.add_months(start, months) == expected


def _running(**term_overrides: object) -> ContractSnapshot:
    created = contracts.create(ContractDraft.model_validate(draft(terms=terms(**term_overrides))),
                               contract_id="c1", tenant_id="t1", now=NOW)
    return contracts.activate(created.snapshot, now=NOW).snapshot


def test_lapse_waits_for_the_day_after_the_end_date_in_the_contracts_time_zone() -> None:
    snap = _running(auto_renew=False)  # Europe/Berlin, ends 2027-01-31
    assert contracts.lapse(snap, now=datetime(2027, 1, 31, 22, 59, tzinfo=UTC)) is None  # 23:59 in Berlin
    change = contracts.lapse(snap, now=datetime(2027, 1, 31, 23, 0, tzinfo=UTC))  # midnight in Berlin
    assert change is not None and isinstance(change.event, ContractExpired)
    assert change.snapshot.status is ContractStatus.EXPIRED
    assert change.event.expired_on == date(2027, 2, 1)


def test_lapse_auto_renews_unless_the_crm_decided_to_terminate() -> None:
    snap = _running(auto_renew=True, renewal_term_months=12)
    later = datetime(2027, 2, 2, tzinfo=UTC)
    renewed = contracts.lapse(snap, now=later)
    assert renewed is not None and renewed.action == "auto-renewed"
    assert renewed.snapshot.current.end_date == date(2028, 1, 31)
    ended = contracts.lapse(snap, now=later, renewal_decision="terminate")
    assert ended is not None and isinstance(ended.event, ContractExpired)


def test_lapse_ignores_drafts_and_evergreen_contracts() -> None:
    later = datetime(2030, 1, 1, tzinfo=UTC)
    draft_snap = contracts.create(ContractDraft.model_validate(draft()), contract_id="c", tenant_id="t",
                                  now=NOW).snapshot
    assert contracts.lapse(draft_snap, now=later) is None
    assert contracts.lapse(_running(end_date=None), now=later) is None
