"""Invoices racing their contract's activation; invoice numbers re-typed in another case or spacing;
an event of another topic's type on a consumed topic."""

from __future__ import annotations

import threading
from datetime import date, timedelta

from invoice_validator import samples as s

from contract_schema import ContractStatus, InvoiceReceived, VerdictStatus, encode
from contract_schema.topics import INVOICE_RECEIVED
from mesh_common.dlq import read_dead_letter
from mesh_testing import unique_name, wait_for

from .conftest import CLOCK_START
from .harness import SOURCE, Running, wait_metric

ROUNDS = 12
PARKED = "invoice_validator_parked_total"


def _post(validator: Running, invoice: InvoiceReceived, token: str) -> str:
    body = invoice.model_dump(mode="json", exclude={"invoice_id", "tenant_id", "received_at"})
    with validator.http() as http:
        r = http.post("/v1/invoices", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202, r.text
    return str(r.json()["invoice_id"])


def test_invoices_posted_while_their_contract_is_activated_get_the_verdicts_of_the_active_contract(
        validator: Running) -> None:
    """The registry's activation snapshot and three invoices through the HTTP intake, all at once, many
    times, the snapshot started first, between and last: never CONTRACT_NOT_ACTIVE for a contract that
    was being activated."""
    token = validator.token("invoices:write")
    expected = (VerdictStatus.APPROVED, VerdictStatus.REJECTED, VerdictStatus.APPROVED)
    results: list[tuple[str, int, VerdictStatus, tuple[str, ...]]] = []
    for n in range(ROUNDS):
        draft = s.contract(unique_name("C"), vendor=unique_name("V"), status=ContractStatus.DRAFT)
        validator.produce(draft)
        vendor = draft.counterparty.erp_vendor_id or ""
        invoices = [s.invoice("x", contract_ref=draft.contract_id, vendor=vendor, number=unique_name("N"),
                              lines=(s.line(unit_price=price),)) for price in ("100.00", "130.00", "100.00")]
        ids = [""] * len(invoices)

        def post(k: int, invoice: InvoiceReceived, ids: list[str] = ids) -> None:
            ids[k] = _post(validator, invoice, token)

        activation = draft.model_copy(update={"status": ContractStatus.ACTIVE})
        threads = [threading.Thread(target=post, args=(k, i)) for k, i in enumerate(invoices)]
        threads.insert(n % 4, threading.Thread(target=validator.produce, args=(activation,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k, invoice_id in enumerate(ids):
            v = validator.verdict(invoice_id, timeout=60)
            results.append((draft.contract_id, k, v.status, v.reason_codes))
    wrong = [r for r in results if r[2] is not expected[r[1]]]
    assert wrong == [] and len(results) == 3 * ROUNDS
    assert {r[3] for r in results if r[1] == 1} == {("PRICE_ABOVE_CONTRACT",)}


def test_a_draft_never_activated_is_not_active_after_the_wait_and_a_terminated_one_at_once(
        validator: Running) -> None:
    draft = s.contract(unique_name("C"), vendor=unique_name("V"), status=ContractStatus.DRAFT)
    ended = s.contract(unique_name("C"), vendor=unique_name("V"), status=ContractStatus.TERMINATED,
                       terminated_on=date(2026, 2, 1))
    validator.produce(draft)
    validator.produce(ended)
    before = validator.metric(PARKED)
    waiting = s.invoice(unique_name("INV"), contract_ref=draft.contract_id,
                        vendor=draft.counterparty.erp_vendor_id or "")
    validator.produce(waiting)
    wait_metric(validator, PARKED, lambda v: v >= before + 1)
    late = s.invoice(unique_name("INV"), contract_ref=ended.contract_id, vendor=ended.counterparty.erp_vendor_id or "")
    validator.produce(late)
    assert validator.verdict(late.invoice_id).reason_codes == ("CONTRACT_NOT_ACTIVE",)
    assert validator.verdicts(waiting.invoice_id) == []
    validator.produce(draft.model_copy(update={"title": "still a draft"}))  # a newer snapshot, still draft
    validator.tick(CLOCK_START + timedelta(minutes=30))
    assert validator.verdicts(waiting.invoice_id) == []  # re-checked, still waiting
    validator.tick(CLOCK_START + timedelta(hours=2))
    v = validator.verdict(waiting.invoice_id)
    assert (v.status, v.reason_codes) == (VerdictStatus.REJECTED, ("CONTRACT_NOT_ACTIVE",))


def test_a_number_retyped_in_another_case_spacing_or_separators_is_a_duplicate(validator: Running) -> None:
    c = s.contract(unique_name("C"), vendor=unique_name("V"))
    validator.produce(c)
    vendor = c.counterparty.erp_vendor_id or ""
    number = f"INV-{unique_name('X')}/2026"
    first = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=vendor, number=number)
    validator.produce(first)
    assert validator.verdict(first.invoice_id).status is VerdictStatus.APPROVED
    retyped = [f"  {number.lower()} ", number.replace("-", " ").replace("/", "."), number.replace("-", "_").upper()]
    dups = [s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=vendor, number=n) for n in retyped]
    for d in dups:
        validator.produce(d)
    for d, sent in zip(dups, retyped, strict=True):
        v = validator.verdict(d.invoice_id)
        assert v.reason_codes == ("DUPLICATE_INVOICE",) and v.invoice_number == sent  # kept as sent
    other = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=vendor, number=number + "1")
    validator.produce(other)
    assert validator.verdict(other.invoice_id).status is VerdictStatus.APPROVED


def test_an_event_of_another_topics_type_is_dead_lettered_with_the_reason(validator: Running) -> None:
    c = s.contract(unique_name("C"), vendor=unique_name("V"))
    record = encode(c, source=SOURCE, event_id=unique_name("id"))
    validator.produce_raw(INVOICE_RECEIVED.name, c.contract_id.encode(), record.value, list(record.headers))
    validator.produce(c)
    good = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=c.counterparty.erp_vendor_id or "")
    validator.produce(good)
    assert validator.verdict(good.invoice_id).status is VerdictStatus.APPROVED
    dlq = validator.reader(INVOICE_RECEIVED.name + ".dlq")
    (letter,) = wait_for(lambda: [m for m in dlq.drain() if m.key() == c.contract_id.encode()], timeout=20)
    assert letter.value() == record.value
    reason = read_dead_letter(letter.headers()).reason
    assert c.ce_type in reason and "does not belong" in reason
