"""State transitions of a contract, as pure functions over ContractSnapshot.

Each returns the new snapshot and the change event (if any) to publish; the shell stores
both in one transaction (the snapshot in tables, both in the outbox).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contract_schema.base import Origin
from contract_schema.contract import (
    ContractActivated,
    ContractAmended,
    ContractEvent,
    ContractExpired,
    ContractRenewed,
    ContractSnapshot,
    ContractStatus,
    ContractTerminated,
    ContractTerms,
    FieldChange,
    ObligationKind,
    ObligationState,
    changed_fields,
)
from contract_schema.obligation import MilestoneCompleted

from .model import Amendment, ContractDraft, Renewal, Termination, TermsInput
from .validation import Violation, check, validate_amendment, validate_terms

SOURCE_SYSTEM = "contract-registry"


class InvalidTransition(Exception):
    """The contract's status does not allow the action (HTTP 409)."""


class UnknownObligation(Exception):
    """No obligation with that id in the contract's current version (HTTP 404)."""


@dataclass(frozen=True)
class Change:
    snapshot: ContractSnapshot
    event: ContractEvent | None
    action: str
    details: dict[str, Any]


def _terms(inp: TermsInput, version: int, effective_from: date | None) -> ContractTerms:
    # TermsInput is ContractTerms with `version` and `effective_from` optional, already validated, and
    # ContractTerms has no validator across fields: building it from the values skips a second validation
    # (a third of a bulk import's time per record).
    values = {name: getattr(inp, name) for name in ContractTerms.model_fields}
    values["version"] = version
    values["effective_from"] = effective_from or inp.effective_from or inp.effective_date
    return ContractTerms.model_construct(**values)


def today_in(snapshot_tz: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(snapshot_tz)).date()


def create(draft: ContractDraft, *, contract_id: str, tenant_id: str, now: datetime) -> Change:
    terms = _terms(draft.terms, 1, None)
    check(validate_terms(terms))
    snapshot = ContractSnapshot(
        contract_id=contract_id, tenant_id=tenant_id, title=draft.title, counterparty=draft.counterparty,
        direction=draft.direction, contract_type=draft.contract_type, business_unit=draft.business_unit,
        owner=draft.owner, backup_owner=draft.backup_owner, timezone=draft.timezone, tags=draft.tags,
        status=ContractStatus.DRAFT, versions=(terms,), updated_at=now)
    return Change(snapshot, None, "created", {"version": 1})


def amend(snapshot: ContractSnapshot, amendment: Amendment, *, now: datetime) -> Change:
    if snapshot.status in (ContractStatus.TERMINATED, ContractStatus.EXPIRED):
        raise InvalidTransition(f"a {snapshot.status.value} contract cannot be amended")
    previous = snapshot.current
    terms = _terms(amendment.terms, previous.version + 1, amendment.effective_from)
    check(validate_terms(terms) + validate_amendment(previous, terms))
    header: dict[str, Any] = {k: getattr(amendment, k) for k in ("title", "owner", "backup_owner",
                                                                   "business_unit", "tags")
                              if getattr(amendment, k) is not None}
    changes = list(changed_fields(previous.model_dump(mode="json"), terms.model_dump(mode="json")))
    for name, value in header.items():
        old = getattr(snapshot, name)
        if old != value:
            changes.append(FieldChange(field=name, old=_json(old), new=_json(value)))
    new = snapshot.model_copy(update=header | {"versions": (*snapshot.versions, terms), "updated_at": now})
    new = ContractSnapshot.model_validate(new.model_dump())
    event = ContractAmended(contract_id=snapshot.contract_id, tenant_id=snapshot.tenant_id, version=terms.version,
                            occurred_at=now, effective_from=terms.effective_from, reason=amendment.reason,
                            changes=tuple(changes))
    return Change(new, event, "amended", {"version": terms.version, "effective_from": str(terms.effective_from),
                                          "reason": amendment.reason,
                                          "changes": [c.model_dump(mode="json") for c in changes]})


def activate(snapshot: ContractSnapshot, *, now: datetime) -> Change:
    if snapshot.status not in (ContractStatus.DRAFT, ContractStatus.SUSPENDED):
        raise InvalidTransition(f"only a draft or suspended contract can be activated, this one is "
                                f"{snapshot.status.value}")
    new = snapshot.model_copy(update={"status": ContractStatus.ACTIVE, "updated_at": now})
    event = ContractActivated(contract_id=snapshot.contract_id, tenant_id=snapshot.tenant_id,
                              version=snapshot.current.version, occurred_at=now)
    return Change(new, event, "activated", {"from_status": snapshot.status.value})


def terminate(snapshot: ContractSnapshot, termination: Termination, *, now: datetime) -> Change:
    if snapshot.status in (ContractStatus.TERMINATED, ContractStatus.EXPIRED):
        raise InvalidTransition(f"the contract is already {snapshot.status.value}")
    on = termination.terminated_on or today_in(snapshot.timezone, now)
    first = snapshot.versions[0]
    if on < first.effective_date and snapshot.status != ContractStatus.DRAFT:
        check([Violation("terminated_on", f"terminated_on {on} is before the contract starts "
                                          f"({first.effective_date})")])
    new = snapshot.model_copy(update={"status": ContractStatus.TERMINATED, "terminated_on": on,
                                      "updated_at": now})
    event = ContractTerminated(contract_id=snapshot.contract_id, tenant_id=snapshot.tenant_id,
                               version=snapshot.current.version, occurred_at=now, terminated_on=on,
                               reason=termination.reason)
    return Change(new, event, "terminated", {"terminated_on": str(on), "reason": termination.reason,
                                             "from_status": snapshot.status.value})


def renew(snapshot: ContractSnapshot, renewal: Renewal, *, now: datetime) -> Change:
    """A renewal is a new version running from the day after the current end for the renewal term."""
    if snapshot.status not in (ContractStatus.ACTIVE, ContractStatus.RENEWED, ContractStatus.EXPIRED):
        raise InvalidTransition(f"a {snapshot.status.value} contract cannot be renewed")
    current = snapshot.current
    if current.end_date is None:
        check([Violation("terms.end_date", "an evergreen contract (no end_date) cannot be renewed")])
    assert current.end_date is not None
    months = renewal.renewal_term_months or current.renewal_term_months
    if not months:
        check([Violation("renewal_term_months", "not given and the contract has no renewal_term_months")])
    assert months is not None
    try:
        start = current.end_date + timedelta(days=1)
        new_end = add_months(current.end_date, months)
    except (OverflowError, ValueError):  # past 9999-12-31: a rule broken, not a crash
        check([Violation("renewal_term_months", f"a renewal for {months} months would end after {date.max}")])
        raise
    terms = current.model_copy(update={"version": current.version + 1, "effective_from": start,
                                       "end_date": new_end, "reason": f"renewal for {months} months"})
    new = snapshot.model_copy(update={"versions": (*snapshot.versions, terms), "status": ContractStatus.RENEWED,
                                      "updated_at": now})
    event = ContractRenewed(contract_id=snapshot.contract_id, tenant_id=snapshot.tenant_id, version=terms.version,
                            occurred_at=now, new_end_date=new_end, renewal_term_months=months)
    return Change(new, event, "renewed", {"version": terms.version, "new_end_date": str(new_end),
                                          "renewal_term_months": months})


def lapse(snapshot: ContractSnapshot, *, now: datetime, renewal_decision: str | None = None) -> Change | None:
    """What happens once a running contract passes its end date (in its own time zone), if anything.

    Auto-renewing contracts renew for their renewal term unless the CRM decided to terminate;
    all others expire. `expired_on` is the first day no longer in force (like `terminated_on`).
    """
    current = snapshot.current
    if snapshot.status not in (ContractStatus.ACTIVE, ContractStatus.RENEWED) or current.end_date is None:
        return None
    if today_in(snapshot.timezone, now) <= current.end_date:
        return None
    if current.auto_renew and current.renewal_term_months and renewal_decision != "terminate":
        change = renew(snapshot, Renewal(), now=now)
        return Change(change.snapshot, change.event, "auto-renewed", change.details)
    expired_on = current.end_date + timedelta(days=1)
    new = snapshot.model_copy(update={"status": ContractStatus.EXPIRED, "updated_at": now})
    event = ContractExpired(contract_id=snapshot.contract_id, tenant_id=snapshot.tenant_id, version=current.version,
                            occurred_at=now, expired_on=expired_on)
    return Change(new, event, "expired", {"expired_on": str(expired_on)})


def complete_milestone(snapshot: ContractSnapshot, obligation_id: str, *, now: datetime,
                       evidence_ref: str | None) -> tuple[ObligationState, MilestoneCompleted]:
    """A completion recorded on the contract side: the obligation-engine turns it into an ERP command."""
    ob = snapshot.current.obligation(obligation_id)
    if ob is None:
        raise UnknownObligation(f"no obligation {obligation_id!r} in version {snapshot.current.version}")
    if ob.kind not in (ObligationKind.MILESTONE, ObligationKind.DELIVERABLE):
        raise InvalidTransition(f"obligation {obligation_id!r} is a {ob.kind.value}, not a milestone or deliverable")
    if snapshot.status not in (ContractStatus.ACTIVE, ContractStatus.RENEWED):
        raise InvalidTransition(f"milestones of a {snapshot.status.value} contract cannot be completed")
    state = ObligationState(obligation_id=obligation_id, status="completed", completed_at=now,
                            source_system=SOURCE_SYSTEM)
    event = MilestoneCompleted(contract_id=snapshot.contract_id, obligation_id=obligation_id,
                               source_system=SOURCE_SYSTEM, origin=Origin.CONTRACT, occurred_at=now,
                               completed_at=now, evidence_ref=evidence_ref)
    return state, event


def as_of(snapshot: ContractSnapshot, on: date) -> ContractSnapshot | None:
    """The contract as it stood on a date: only the versions in force by then (None before the first)."""
    versions = tuple(v for v in snapshot.versions if v.effective_from <= on)
    if not versions:
        return None
    return snapshot.model_copy(update={"versions": versions})


def add_months(day: date, months: int) -> date:
    """Same day `months` later, clamped to the month's end (Jan 31 + 1 month = Feb 28/29)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _json(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value
