"""Expand obligation definitions into dated instances with stable ids.

Each contract version governs the dates from its `effective_from` until the next version's,
so an amendment changes only what falls after it takes effect. Instance ids are stable:
a one-off is its obligation id; a recurrence's n-th occurrence (counted from its DTSTART) is
`<obligation>#<n>`; an SLA window is `<obligation>@<window start>`. A changed date therefore
keeps its id and *moves*; a removed definition leaves ids behind that get cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from dateutil.rrule import rrulestr

from contract_schema import ContractSnapshot, ContractTerms, ObligationDefinition, ObligationKind

from .config import EngineConfig


@dataclass(frozen=True, slots=True)
class Planned:
    instance_id: str
    obligation_id: str
    kind: str
    title: str
    due_at: datetime | None
    version: int
    lead_days: int | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None


def start_of(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def due_time(day: date, tz: ZoneInfo) -> datetime:
    """A due *date* is met until the end of that day in the contract's time zone."""
    return start_of(day + timedelta(days=1), tz)


_WINDOW_STEP = {"daily": relativedelta(days=1), "weekly": relativedelta(weeks=1),
                "monthly": relativedelta(months=1), "quarterly": relativedelta(months=3)}


def window_start_for(day: date, window: str) -> date:
    """The calendar-aligned window (day / ISO week / month / quarter) containing `day`."""
    if window == "daily":
        return day
    if window == "weekly":
        return day - timedelta(days=day.weekday())
    if window == "monthly":
        return day.replace(day=1)
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def expand(snapshot: ContractSnapshot, now: datetime, cfg: EngineConfig,
           terminated_on: date | None = None) -> tuple[dict[str, Planned], list[str]]:
    """All instances the contract calls for up to the horizon; plus problems found (bad RRULEs)."""
    tz = ZoneInfo(snapshot.timezone)
    today = now.astimezone(tz).date()
    horizon_end = today + timedelta(days=cfg.horizon_days)
    ends = [d for d in (terminated_on, snapshot.terminated_on) if d is not None]
    last_day_alive = min(ends) - timedelta(days=1) if ends else date.max  # termination cancels from that day on
    versions = snapshot.versions
    governing_now = snapshot.terms_on(today) or versions[0]
    planned: dict[str, Planned] = {}
    errors: list[str] = []
    for i, terms in enumerate(versions):
        seg_start = terms.effective_from if i > 0 else date.min
        seg_end = versions[i + 1].effective_from - timedelta(days=1) if i + 1 < len(versions) else date.max
        last = min(horizon_end, terms.end_date or date.max, last_day_alive, seg_end)
        for definition in terms.obligations:
            try:
                for p in _occurrences(definition, terms, tz, seg_start, last, cfg,
                                      undated_ok=terms is governing_now and today <= last_day_alive):
                    planned[p.instance_id] = p
            except (ValueError, TypeError) as exc:
                errors.append(f"obligation {definition.obligation_id!r} (version {terms.version}): {exc}")
    return planned, errors


def _occurrences(d: ObligationDefinition, terms: ContractTerms, tz: ZoneInfo, first: date, last: date,
                 cfg: EngineConfig, undated_ok: bool) -> list[Planned]:
    base = dict(obligation_id=d.obligation_id, kind=str(d.kind), title=d.title, version=terms.version,
                lead_days=d.lead_time_days)
    if d.sla is not None:
        return _sla_windows(d, terms, tz, first, last, cfg, base)
    if d.recurrence:
        return _recurrences(d, terms, tz, first, last, cfg, base)
    if d.due_date is not None:
        if first <= d.due_date <= last:
            return [Planned(instance_id=d.obligation_id, due_at=due_time(d.due_date, tz), **base)]  # type: ignore[arg-type]
        return []
    # An undated milestone or deliverable: tracked (it can be completed) but never due.
    return [Planned(instance_id=d.obligation_id, due_at=None, **base)] if undated_ok else []  # type: ignore[arg-type]


def _recurrences(d: ObligationDefinition, terms: ContractTerms, tz: ZoneInfo, first: date, last: date,
                 cfg: EngineConfig, base: dict[str, object]) -> list[Planned]:
    assert d.recurrence is not None
    dtstart = datetime.combine(d.due_date or terms.effective_date, time(0))
    rule_text = d.recurrence.removeprefix("RRULE:")
    rule = rrulestr(rule_text, dtstart=dtstart)
    out: list[Planned] = []
    for n, occurrence in enumerate(rule, start=1):
        day = occurrence.date()
        if day > last or n > 50 * cfg.max_occurrences:
            break
        if day >= first:
            out.append(Planned(instance_id=f"{d.obligation_id}#{n}", due_at=due_time(day, tz), **base))  # type: ignore[arg-type]
            if len(out) >= cfg.max_occurrences:
                break
    return out


def _sla_windows(d: ObligationDefinition, terms: ContractTerms, tz: ZoneInfo, first: date, last: date,
                 cfg: EngineConfig, base: dict[str, object]) -> list[Planned]:
    assert d.sla is not None
    base = base | {"kind": str(ObligationKind.SLA)}
    step = _WINDOW_STEP[d.sla.window]
    start = window_start_for(max(terms.effective_date, first), d.sla.window)
    out: list[Planned] = []
    while start <= last and len(out) < cfg.max_occurrences:
        end = start + step
        out.append(Planned(instance_id=f"{d.obligation_id}@{start.isoformat()}",
                           due_at=start_of(end, tz) + timedelta(days=cfg.sla_grace_days),
                           window_start=start_of(start, tz), window_end=start_of(end, tz), **base))  # type: ignore[arg-type]
        start = end
    return out


def sla_instance_id(obligation_id: str, window_start: datetime, tz: ZoneInfo, window: str) -> str:
    return f"{obligation_id}@{window_start_for(window_start.astimezone(tz).date(), window).isoformat()}"
