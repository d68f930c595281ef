"""Invoice-number normalisation, the activation wait, and the billing ledger derived from verdicts (pure)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from invoice_validator import samples as s
from invoice_validator.domain.ledger import Ledger
from invoice_validator.domain.model import BillingState, ObligationView
from invoice_validator.domain.numbers import duplicate_key, normalize_invoice_number
from invoice_validator.domain.rules import awaits_activation
from invoice_validator.domain.validate import validate_invoice

from contract_schema import ContractStatus

from .test_rules import NOW


@pytest.mark.parametrize("sent", ["INV-2026/001", " inv-2026/001 ", "Inv 2026 001", "inv.2026_001", "INV2026001",
                                  "inv\t2026  /  001", "ＩＮＶ－２０２６／００１", "INV–2026—001", "inv\\2026\\001"])
def test_case_spacing_and_separators_do_not_make_a_new_number(sent: str) -> None:
    assert normalize_invoice_number(sent) == "inv2026001"


def test_different_characters_stay_different_numbers() -> None:
    assert normalize_invoice_number("INV-2026-001") != normalize_invoice_number("INV-2026-011")
    assert normalize_invoice_number("A1") != normalize_invoice_number("A-I")
    assert normalize_invoice_number(" -/ ") == "-/"  # only separators: not the empty number


def test_duplicate_key_is_per_tenant_and_vendor() -> None:
    assert duplicate_key("t1", "V-1", "inv 7") == duplicate_key("t1", "V-1", "INV-7")
    assert duplicate_key("t1", "V-1", "INV-7") != duplicate_key("t1", "V-2", "INV-7")
    assert duplicate_key("t1", "V-1", "INV-7") != duplicate_key("t2", "V-1", "INV-7")


def test_a_draft_waits_for_its_activation_but_terminated_or_expired_is_final() -> None:
    dates = [date(2026, 3, 1)]
    assert awaits_activation(s.contract(status=ContractStatus.DRAFT), dates)
    assert not awaits_activation(s.contract(), dates)  # active: nothing to wait for
    assert not awaits_activation(s.contract(status=ContractStatus.TERMINATED, terminated_on=date(2026, 2, 1)), dates)
    assert not awaits_activation(s.contract(status=ContractStatus.DRAFT, terminated_on=date(2026, 2, 1)), dates)
    assert not awaits_activation(s.contract(status=ContractStatus.DRAFT), [date(2028, 1, 5)])  # past its end


def test_billing_delta_added_back_gives_the_state_after_the_invoice() -> None:
    before = BillingState({"L-A": Decimal("100")}, {"L-A": Decimal("1")}, Decimal("100"), frozenset({"M1"}))
    after = BillingState({"L-A": Decimal("250"), "L-B": Decimal("5")}, {"L-A": Decimal("3"), "L-B": Decimal("1")},
                         Decimal("255"), frozenset({"M1", "M2"}))
    delta = after.minus(before)
    assert delta == BillingState({"L-A": Decimal("150"), "L-B": Decimal("5")},
                                 {"L-A": Decimal("2"), "L-B": Decimal("1")}, Decimal("155"), frozenset({"M2"}))
    assert before.plus(delta) == after
    assert after.minus(after) == BillingState()


def test_ledger_rebuilt_from_the_verdicts_equals_the_one_kept_while_deciding() -> None:
    contract = s.contract("C-1")
    live, entries = Ledger(), []
    for n in range(5):
        invoice = s.invoice(f"INV-{n}", number=f"N-{n % 3}")  # N-0 and N-1 come twice: duplicates
        key = duplicate_key(invoice.tenant_id, invoice.vendor_id, invoice.invoice_number)
        first = live.first_invoice(key)
        billing = live.billing("C-1")
        outcome = validate_invoice(invoice, contract, obligations=ObligationView(), billing=billing,
                                   duplicate_of=first, now=NOW)
        entry = {"contract_id": "C-1", "billed": outcome.billing.minus(billing).to_json(),
                 "seen_key": key if first is None else None}
        live.record(invoice.invoice_id, entry)
        entries.append((invoice.invoice_id, entry))
    assert live.billing("C-1").billed_total == Decimal("3000.00")  # three distinct numbers of 1,000
    assert live.first_invoice(duplicate_key("t1", "V-1", "n 1")) == "INV-1"
    rebuilt = Ledger.rebuild(reversed(entries))  # a table iterates in any order
    assert rebuilt.billing("C-1") == live.billing("C-1")
    assert rebuilt.first_invoice(duplicate_key("t1", "V-1", "N-0")) == "INV-0"
