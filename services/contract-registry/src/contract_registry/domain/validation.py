"""Business rules a contract version must satisfy. Each violation names the field (a dotted path)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from contract_schema.contract import ContractTerms, RateCardLine, TierMode


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


class BusinessRuleError(Exception):
    """One or more rules broken; the HTTP shell turns this into a 422 listing every violation."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))
        self.violations = violations


# contract_versions.total_value is NUMERIC(20, 6): 14 digits before the point, 6 after. Rate-card
# amounts keep below the same ceiling and to 12 places (usage prices can be tiny), so consumers
# computing with them never meet an exponent Decimal or PostgreSQL cannot hold.
MAX_AMOUNT = Decimal(10) ** 14


def _amount(value: Decimal | None, field: str, places: int = 12) -> list[Violation]:
    if value is None:
        return []
    if value >= MAX_AMOUNT:
        return [Violation(field, f"must be below {MAX_AMOUNT:,} (the largest amount stored)")]
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -places and value != value.quantize(Decimal(1).scaleb(-places)):
        return [Violation(field, f"at most {places} decimal places")]
    return []


def validate_terms(terms: ContractTerms, prefix: str = "terms") -> list[Violation]:
    out: list[Violation] = []
    out += _amount(terms.total_value, f"{prefix}.total_value", places=6)
    if terms.end_date is not None and terms.end_date < terms.effective_date:
        out.append(Violation(f"{prefix}.end_date",
                             f"end_date {terms.end_date} is before effective_date {terms.effective_date}"))
    elif terms.end_date is not None:
        term_days = (terms.end_date - terms.effective_date).days
        if terms.notice_period_days > term_days:
            out.append(Violation(f"{prefix}.notice_period_days",
                                 f"notice period of {terms.notice_period_days} days is longer than the term "
                                 f"of {term_days} days"))
    if terms.signed_date is not None and terms.end_date is not None and terms.signed_date > terms.end_date:
        out.append(Violation(f"{prefix}.signed_date", "signed after the contract ends"))
    out += _unique(terms, prefix)
    for i, line in enumerate(terms.rate_card):
        out += _line_rules(line, terms.currency, f"{prefix}.rate_card[{i}]")
    out += _windows_overlap(terms.rate_card, prefix)
    return out


def validate_amendment(previous: ContractTerms, amended: ContractTerms) -> list[Violation]:
    """An amendment may not take effect before the version it amends."""
    if amended.effective_from < previous.effective_from:
        return [Violation("effective_from",
                          f"amendment effective {amended.effective_from} is before version {previous.version} "
                          f"it amends (effective {previous.effective_from})")]
    return []


def check(violations: list[Violation]) -> None:
    if violations:
        raise BusinessRuleError(violations)


def _unique(terms: ContractTerms, prefix: str) -> list[Violation]:
    out: list[Violation] = []
    seen: set[str] = set()
    for i, line in enumerate(terms.rate_card):
        if line.line_id in seen:
            out.append(Violation(f"{prefix}.rate_card[{i}].line_id", f"duplicate line_id {line.line_id!r}"))
        seen.add(line.line_id)
    seen = set()
    for i, ob in enumerate(terms.obligations):
        if ob.obligation_id in seen:
            out.append(Violation(f"{prefix}.obligations[{i}].obligation_id",
                                 f"duplicate obligation_id {ob.obligation_id!r}"))
        seen.add(ob.obligation_id)
    return out


def _line_rules(line: RateCardLine, currency: str, path: str) -> list[Violation]:
    out: list[Violation] = []
    if line.currency != currency:
        out.append(Violation(f"{path}.currency",
                             f"rate card currency {line.currency} differs from the contract currency {currency}"))
    if line.valid_to is not None and line.valid_to < line.valid_from:
        out.append(Violation(f"{path}.valid_to", f"valid_to {line.valid_to} is before valid_from {line.valid_from}"))
    out += _tier_rules(line, path)
    for name in ("unit_price", "not_to_exceed", "tolerance_absolute"):
        out += _amount(getattr(line, name), f"{path}.{name}")
    for j, tier in enumerate(line.tiers):
        out += _amount(tier.unit_price, f"{path}.tiers[{j}].unit_price")
    return out


def _tier_rules(line: RateCardLine, path: str) -> list[Violation]:
    """Tiers, in increasing order, must cover [0, ∞) or [0, last bound) without gaps or overlaps.

    Bands are half-open, [from_quantity, to_quantity): a band's upper bound is the next one's lower
    bound (docs/adr/0018). The first broken rule is reported: what follows a broken band is noise.
    """
    tiers = line.tiers
    if not tiers:
        if line.tier_mode is TierMode.GRADUATED:
            return [Violation(f"{path}.tier_mode", "graduated pricing needs tiers; the line has none")]
        return []
    for j, tier in enumerate(tiers):
        if tier.to_quantity is not None and tier.to_quantity <= tier.from_quantity:
            width = "zero" if tier.to_quantity == tier.from_quantity else "negative"
            return [Violation(f"{path}.tiers[{j}].to_quantity",
                              f"to_quantity {tier.to_quantity} is not above from_quantity {tier.from_quantity} "
                              f"(a band of {width} width)")]
    for j, tier in enumerate(tiers[1:], start=1):
        same = next((k for k in range(j) if tiers[k].from_quantity == tier.from_quantity), None)
        if same is not None:
            return [Violation(f"{path}.tiers[{j}].from_quantity",
                              f"duplicate lower bound: tier {j} starts at {tier.from_quantity} like tier {same}")]
        if tier.from_quantity < tiers[j - 1].from_quantity:
            return [Violation(f"{path}.tiers[{j}].from_quantity",
                              f"tiers out of order: tier {j} starts at {tier.from_quantity}, below tier {j - 1} "
                              f"which starts at {tiers[j - 1].from_quantity}; list them by increasing from_quantity")]
    if tiers[0].from_quantity != 0:
        return [Violation(f"{path}.tiers[0].from_quantity",
                          f"the first tier starts at {tiers[0].from_quantity}, not at zero")]
    for j, tier in enumerate(tiers[1:], start=1):
        prev = tiers[j - 1]
        if prev.to_quantity is None:
            return [Violation(f"{path}.tiers[{j}].from_quantity",
                              f"tier {j - 1} has no upper bound, so tier {j} overlaps it")]
        if tier.from_quantity < prev.to_quantity:
            return [Violation(f"{path}.tiers[{j}].from_quantity",
                              f"tier {j} starts at {tier.from_quantity}, overlapping tier {j - 1} "
                              f"which runs to {prev.to_quantity}")]
        if tier.from_quantity > prev.to_quantity:
            return [Violation(f"{path}.tiers[{j}].from_quantity",
                              f"gap between tier {j - 1} (to {prev.to_quantity}) and tier {j} "
                              f"(from {tier.from_quantity})")]
    return []


def _windows_overlap(lines: tuple[RateCardLine, ...], prefix: str) -> list[Violation]:
    """Two lines for the same item (and unit) may not be valid on the same day."""
    by_item: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, line in enumerate(lines):
        by_item[(line.item_code, line.unit)].append(i)
    out: list[Violation] = []
    for (item, _unit), idx in by_item.items():
        ordered = sorted(idx, key=lambda i: lines[i].valid_from)
        for a, b in zip(ordered, ordered[1:], strict=False):
            first, second = lines[a], lines[b]
            if first.valid_to is None or second.valid_from <= first.valid_to:
                out.append(Violation(f"{prefix}.rate_card[{b}].valid_from",
                                     f"validity window of item {item!r} overlaps rate_card[{a}] "
                                     f"({first.valid_from} to {first.valid_to or 'open end'})"))
    return out
