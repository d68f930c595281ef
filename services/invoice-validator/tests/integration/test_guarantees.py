"""Ordering and delivery guarantees: parking, redelivery, dead letters, restart."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from invoice_validator import samples as s
from invoice_validator.adapters.faust_app import derived_id

from contract_schema import InvoiceReceived, VerdictStatus
from contract_schema.topics import INVOICE_RECEIVED
from mesh_common.dlq import read_dead_letter
from mesh_common.faust_kafka import partition_for
from mesh_testing import unique_name, wait_for

from .conftest import CLOCK_START
from .harness import PARTITIONS, Running, start, stop, wait_metric

PARKED = "invoice_validator_parked_total"


def test_invoice_before_its_contract_is_parked_then_validated(validator: Running) -> None:
    cid, vendor = unique_name("C"), unique_name("V")
    before = validator.metric(PARKED)
    by_ref = s.invoice(unique_name("INV"), contract_ref=cid, vendor=vendor)
    by_vendor = s.invoice(unique_name("INV"), contract_ref=None, vendor=vendor, lines=(s.line(unit_price="130"),))
    validator.produce(by_ref)
    validator.produce(by_vendor)
    wait_metric(validator, PARKED, lambda v: v >= before + 2)
    assert validator.verdicts(by_ref.invoice_id) == []
    validator.produce(s.contract(cid, vendor=vendor))
    assert validator.verdict(by_ref.invoice_id).status is VerdictStatus.APPROVED
    v = validator.verdict(by_vendor.invoice_id)
    assert (v.status, v.reason_codes, v.contract_id) == (VerdictStatus.REJECTED, ("PRICE_ABOVE_CONTRACT",), cid)


def test_parked_invoice_needs_review_when_its_contract_never_comes(validator: Running) -> None:
    before = validator.metric(PARKED)
    inv = s.invoice(unique_name("INV"), contract_ref=unique_name("C-NEVER"), vendor=unique_name("V"))
    validator.produce(inv)
    wait_metric(validator, PARKED, lambda v: v >= before + 1)
    validator.tick(CLOCK_START + timedelta(minutes=30))  # not yet: the wait is an hour
    assert validator.verdicts(inv.invoice_id) == []
    validator.tick(CLOCK_START + timedelta(hours=2))
    v = validator.verdict(inv.invoice_id)
    assert (v.status, v.reason_codes) == (VerdictStatus.NEEDS_REVIEW, ("CONTRACT_UNKNOWN",))


def test_redelivered_event_gives_one_verdict_with_a_stable_id(validator: Running) -> None:
    c = s.contract(unique_name("C"), vendor=unique_name("V"))
    validator.produce(c)
    inv = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=c.counterparty.erp_vendor_id or "")
    ce_id = str(uuid.uuid4())
    validator.produce(inv, event_id=ce_id)
    validator.produce(inv, event_id=ce_id)
    # Same key, same partition, consumed after both copies: once its verdict is out, both were seen.
    marker = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=c.counterparty.erp_vendor_id or "")
    validator.produce(marker)
    validator.verdict(marker.invoice_id)
    verdicts = validator.verdicts(inv.invoice_id)
    # The redelivery re-sends the stored verdict (it may never have left a killed producer): the same
    # record with the same id, which consumers drop; never a second decision.
    assert {v.model_dump_json() for v in verdicts} == {verdicts[0].model_dump_json()}
    assert verdicts[0].status is VerdictStatus.APPROVED
    assert set(validator.verdict_ids(inv.invoice_id)) == {derived_id("verdict", ce_id)}


def test_garbage_goes_to_the_dlq_and_the_next_invoice_still_gets_its_verdict(validator: Running) -> None:
    c = s.contract(unique_name("C"), vendor=unique_name("V"))
    validator.produce(c)
    garbage = b'{"invoice_id": "half a record'
    headers = [("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()), ("ce_source", b"/erp"),
               ("ce_type", InvoiceReceived.ce_type.encode())]
    validator.produce_raw(INVOICE_RECEIVED.name, c.contract_id.encode(), garbage, headers)
    schema_bad = s.invoice(unique_name("INV"), contract_ref=c.contract_id).model_dump(mode="json")
    schema_bad["currency"] = "XXX"
    validator.produce_raw(INVOICE_RECEIVED.name, c.contract_id.encode(), json.dumps(schema_bad).encode(),
                          [(k, str(uuid.uuid4()).encode() if k == "ce_id" else v) for k, v in headers])
    good = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=c.counterparty.erp_vendor_id or "")
    validator.produce(good)
    assert validator.verdict(good.invoice_id).status is VerdictStatus.APPROVED
    dlq = validator.reader(INVOICE_RECEIVED.name + ".dlq")
    letters = wait_for(lambda: [m for m in dlq.drain() if m.key() == c.contract_id.encode()], timeout=20)
    assert len(letters) == 2
    assert letters[0].value() == garbage
    dead = read_dead_letter(letters[0].headers())
    assert dead.source_topic == validator.topic(INVOICE_RECEIVED.name) and "not JSON" in dead.reason
    assert "currency" in read_dead_letter(letters[1].headers()).reason


def test_restart_keeps_verdicts_duplicates_and_cumulative_billing(kafka_bootstrap: str, tmp_path: Path) -> None:
    first = start(kafka_bootstrap, tmp_path)
    prefix = first.prefix
    try:
        first.tick(CLOCK_START)
        c = s.contract(unique_name("C"), vendor=unique_name("V"),
                       versions=(s.terms(rate_card=(s.rate_line(not_to_exceed=Decimal("1500")),)),))
        vendor = c.counterparty.erp_vendor_id or ""
        first.produce(c)
        inv = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=vendor)
        ce_id = first.produce(inv)
        assert first.verdict(inv.invoice_id).status is VerdictStatus.APPROVED
    finally:
        stop(first)

    second = start(kafka_bootstrap, tmp_path, prefix=prefix, create=False)
    try:
        second.produce(inv, event_id=ce_id)  # redelivered after the restart
        dup = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=vendor, number=inv.invoice_number)
        second.produce(dup)
        over = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=vendor)
        second.produce(over)
        assert second.verdict(dup.invoice_id).reason_codes == ("DUPLICATE_INVOICE",)
        v = second.verdict(over.invoice_id)
        assert v.reason_codes == ("CAP_EXCEEDED",) and v.prevented_overpayment == Decimal("500.00")
        assert len(set(second.verdict_ids(inv.invoice_id))) == 1
    finally:
        stop(second)



def test_two_replicas_share_the_partitions_and_each_invoice_gets_one_verdict(kafka_bootstrap: str,
                                                                               tmp_path: Path) -> None:
    first = start(kafka_bootstrap, tmp_path)
    try:
        second = start(kafka_bootstrap, tmp_path, prefix=first.prefix, create=False)
    except BaseException:
        stop(first)
        raise
    try:
        first.tick(CLOCK_START)
        contracts = [s.contract(unique_name("C"), vendor=unique_name("V")) for _ in range(8)]
        invoices = []
        for c in contracts:
            first.produce(c)
        for c in contracts:
            for _ in range(3):
                inv = s.invoice(unique_name("INV"), contract_ref=c.contract_id,
                                vendor=c.counterparty.erp_vendor_id or "")
                first.produce(inv)
                invoices.append(inv)
        for inv in invoices:
            assert first.verdict(inv.invoice_id, timeout=60).status is VerdictStatus.APPROVED
        assert all(len(set(first.verdict_ids(inv.invoice_id))) == 1 for inv in invoices)
        per_worker = [r.metric('invoice_validator_verdicts_total{status="approved"}') for r in (first, second)]
        assert all(n > 0 for n in per_worker) and sum(per_worker) == len(invoices), per_worker

        # A vendor on another partition than its contract: invoices without a reference are matched on
        # the vendor's partition and validated on the contract's, so the cap counts both kinds.
        cid, vendor = unique_name("C"), unique_name("V")
        while partition_for(cid.encode(), PARTITIONS) == partition_for(vendor.encode(), PARTITIONS):
            vendor = unique_name("V")
        early = s.invoice(unique_name("INV"), contract_ref=None, vendor=vendor)
        first.produce(early)  # before the contract exists: parked on the vendor's partition
        capped = s.contract(cid, vendor=vendor,
                            versions=(s.terms(rate_card=(s.rate_line(not_to_exceed=Decimal("2500")),)),))
        first.produce(capped)
        assert first.verdict(early.invoice_id, timeout=60).status is VerdictStatus.APPROVED
        by_ref = s.invoice(unique_name("INV"), contract_ref=cid, vendor=vendor)
        first.produce(by_ref)
        assert first.verdict(by_ref.invoice_id).status is VerdictStatus.APPROVED
        by_vendor = s.invoice(unique_name("INV"), contract_ref=None, vendor=vendor)
        first.produce(by_vendor)
        v = first.verdict(by_vendor.invoice_id)
        assert (v.reason_codes, v.contract_id, v.prevented_overpayment) == (("CAP_EXCEEDED",), cid, Decimal("500.00"))
    finally:
        stop(second)
        stop(first)
