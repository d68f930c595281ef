"""Renewal timelines: pure functions over plain data, no I/O.

A contract's term ends on `end_date`; notice must be given `notice_period_days` before it
(the notice deadline, a date in the contract's time zone). Stages fire at configurable
offsets before the notice deadline, then at the deadline and at the end date. Evergreen
contracts (no end date) get a periodic review instead. Each stage is due at local midnight
of its date in the contract's time zone.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from contract_schema.base import Person
from contract_schema.contract import ContractSnapshot, ContractStatus
from contract_schema.money import round_money
from contract_schema.renewal import RenewalStage

DEFAULT_OFFSETS = (120, 90, 60, 30)
_OFFSET_STAGES = {120: RenewalStage.DAYS_120, 90: RenewalStage.DAYS_90, 60: RenewalStage.DAYS_60,
                  30: RenewalStage.DAYS_30}


@dataclass(frozen=True)
class TimelineSettings:
    offsets_days: tuple[int, ...] = DEFAULT_OFFSETS
    review_every_months: int = 12  # evergreen contracts
    red_within_days: int = 30  # stages this close to the notice deadline are red until decided

    def __post_init__(self) -> None:
        unknown = [o for o in self.offsets_days if o not in _OFFSET_STAGES]
        if unknown:
            raise ValueError(f"offsets must be among {sorted(_OFFSET_STAGES)}; got {unknown}")


@dataclass(frozen=True, slots=True, kw_only=True)  # slots: 100k of these live in memory
class ContractView:
    """What renewal needs of a contract snapshot (its current version). Built from validated data."""

    contract_id: str
    tenant_id: str
    title: str
    counterparty_id: str
    counterparty_name: str
    crm_account_id: str | None = None
    owner: Person
    backup_owner: Person | None = None
    timezone: str = "UTC"
    status: ContractStatus
    terminated_on: date | None = None
    effective_date: date
    end_date: date | None = None
    notice_period_days: int = 0
    auto_renew: bool = False
    total_value: Decimal
    currency: str
    updated_at: datetime | None = None  # of the snapshot: an older one (a replay) never wins

    @classmethod
    def from_snapshot(cls, snap: ContractSnapshot) -> ContractView:
        terms = snap.current
        return cls(contract_id=snap.contract_id, tenant_id=snap.tenant_id, title=snap.title,
                   counterparty_id=snap.counterparty.party_id, counterparty_name=snap.counterparty.name,
                   crm_account_id=snap.counterparty.crm_account_id, owner=snap.owner,
                   backup_owner=snap.backup_owner, timezone=snap.timezone, status=snap.status,
                   terminated_on=snap.terminated_on, effective_date=terms.effective_date,
                   end_date=terms.end_date, notice_period_days=terms.notice_period_days,
                   auto_renew=terms.auto_renew, total_value=terms.total_value, currency=str(terms.currency),
                   updated_at=snap.updated_at)

    @property
    def evergreen(self) -> bool:
        return self.end_date is None

    @property
    def notice_deadline(self) -> date | None:
        return notice_deadline(self.end_date, self.notice_period_days)

    @property
    def annual_value(self) -> Decimal:
        """Contract value annualised over the term (inclusive days); evergreen: the value as given."""
        if self.end_date is None or self.end_date < self.effective_date:
            return self.total_value
        days = (self.end_date - self.effective_date).days + 1
        return round_money(self.total_value * Decimal(365) / Decimal(days), self.currency)


@dataclass(frozen=True)
class StagePoint:
    key: str  # unique within a term: the stage name, or review:<date> for evergreen reviews
    stage: RenewalStage
    on: date
    due_at: datetime


def notice_deadline(end_date: date | None, notice_period_days: int) -> date | None:
    return None if end_date is None else end_date - timedelta(days=notice_period_days)


def local_midnight(on: date, tz: str) -> datetime:
    return datetime.combine(on, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def local_date(now: datetime, tz: str) -> date:
    return now.astimezone(ZoneInfo(tz)).date()


def add_months(on: date, months: int) -> date:
    month0 = on.month - 1 + months
    year, month = on.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(on.day, calendar.monthrange(year, month)[1]))


def timeline(view: ContractView, settings: TimelineSettings, now: datetime) -> tuple[StagePoint, ...]:
    """The stages of the current term in date order. Evergreen: the last review on or before
    today and the next one (reviews repeat, so only those two matter at any moment)."""
    if view.end_date is None:
        return _reviews(view, settings, local_date(now, view.timezone))
    return _term_timeline(view.end_date, view.notice_period_days, view.timezone, settings.offsets_days)


@functools.lru_cache(maxsize=65536)
def _term_timeline(end_date: date, notice_days: int, tz: str, offsets: tuple[int, ...]) -> tuple[StagePoint, ...]:
    # Pure and independent of `now`: many contracts share dates, so cache (start-up builds 100k of these).
    deadline = end_date - timedelta(days=notice_days)
    points = [StagePoint(_OFFSET_STAGES[o].value, _OFFSET_STAGES[o], deadline - timedelta(days=o),
                         local_midnight(deadline - timedelta(days=o), tz))
              for o in sorted(offsets, reverse=True)]
    points.append(StagePoint(RenewalStage.NOTICE_DEADLINE.value, RenewalStage.NOTICE_DEADLINE, deadline,
                             local_midnight(deadline, tz)))
    points.append(StagePoint(RenewalStage.END_DATE.value, RenewalStage.END_DATE, end_date,
                             local_midnight(end_date, tz)))
    return tuple(sorted(points, key=lambda p: p.on))  # stable: a zero notice period keeps deadline first


def _reviews(view: ContractView, settings: TimelineSettings, today: date) -> tuple[StagePoint, ...]:
    step = settings.review_every_months
    n = 1
    while add_months(view.effective_date, n * step) <= today:
        n += 1
    dates = [add_months(view.effective_date, k * step) for k in (n - 1, n) if k >= 1]
    return tuple(StagePoint(f"review:{d.isoformat()}", RenewalStage.REVIEW, d, local_midnight(d, view.timezone))
                 for d in dates)
