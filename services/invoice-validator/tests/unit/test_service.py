"""The service layer with plain dicts for the Faust tables and recording topics: what happens on each event
type (the HANDLERS table), in milliseconds, without a broker."""

from __future__ import annotations

from typing import Any

from invoice_validator import samples as s
from invoice_validator.adapters.faust_app import derived_id
from invoice_validator.service import HANDLERS, ValidatorService
from invoice_validator.settings import ValidatorSettings

from contract_schema import (
    ContractSnapshot,
    Envelope,
    Event,
    InvoiceReceived,
    InvoiceValidated,
    ObligationCompleted,
    ObligationKind,
    SlaBreached,
    decode,
    encode,
)
from contract_schema.topics import CONTRACT_STATE, INVOICE_RECEIVED, OBLIGATION_EVENTS
from mesh_common.clock import ManualClock
from mesh_common.faust_delivery import DeliveryBarrier


class Topic:
    """Keeps what the service sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_soon(self, **record: Any) -> None:
        self.sent.append(record)

    async def send(self, **record: Any) -> None:
        self.sent.append(record)


def service() -> ValidatorService:
    return ValidatorService(settings=ValidatorSettings(), clock=ManualClock(s.T0), delivery=DeliveryBarrier(),
                            contracts={}, obligations={}, verdicts={}, parked={}, vendors={},
                            verdict_topic=Topic(), alert_topic=Topic(), expiry_topic=Topic(), vendor_topic=Topic(),
                            routed_topic=Topic(), webhook=None)


def envelope(event: Event, event_id: str) -> tuple[Envelope, bytes]:
    record = encode(event, source="tests", event_id=event_id, time=s.T0)
    return decode(record.value, record.headers), record.value


def verdicts(svc: ValidatorService) -> list[tuple[str, InvoiceValidated]]:
    topic = svc.verdict_topic
    return [(dict(r["headers"])["ce_id"].decode(), InvoiceValidated.model_validate_json(r["value"]))
            for r in topic.sent]


def test_the_table_names_a_handler_for_each_event_the_service_acts_on() -> None:
    assert HANDLERS == {
        InvoiceReceived: ValidatorService.on_invoice,
        ContractSnapshot: ValidatorService.on_snapshot,
        ObligationCompleted: ValidatorService.on_obligation_completed,
        SlaBreached: ValidatorService.on_sla_breached,
    }
    carried = {event for spec in (INVOICE_RECEIVED, CONTRACT_STATE, OBLIGATION_EVENTS) for event in spec.events}
    assert set(HANDLERS) <= carried


async def test_an_invoice_of_a_known_contract_gets_one_verdict_and_the_same_one_again_on_redelivery() -> None:
    svc = service()
    await svc.handle(*envelope(s.contract("C-1"), "snap-1"))
    await svc.handle(*envelope(s.invoice("INV-1"), "inv-1"))
    await svc.handle(*envelope(s.invoice("INV-1"), "inv-1"))  # redelivered
    sent = verdicts(svc)
    assert [ce_id for ce_id, _ in sent] == [derived_id("verdict", "inv-1")] * 2
    assert {v.invoice_id for _, v in sent} == {"INV-1"}
    assert svc.verdict_for("INV-1") == sent[0][1]


async def test_an_invoice_of_an_unknown_contract_waits_parked_until_its_snapshot_arrives() -> None:
    svc = service()
    await svc.handle(*envelope(s.invoice("INV-1", contract_ref="C-9"), "inv-1"))
    assert verdicts(svc) == [] and list(svc.parked) == ["ref:C-9"]
    await svc.handle(*envelope(s.contract("C-9"), "snap-9"))
    assert [v.invoice_id for _, v in verdicts(svc)] == ["INV-1"]
    assert svc.parked == {}


async def test_only_a_completed_milestone_is_kept_for_the_billing_rules() -> None:
    svc = service()
    for kind, obligation_id in ((ObligationKind.DELIVERABLE, "D1"), (ObligationKind.MILESTONE, "M1")):
        event = ObligationCompleted.model_construct(contract_id="C-1", obligation_id=obligation_id, kind=kind)
        await svc.handle(Envelope(event, "e", "tests", "t", s.T0), b"")
    assert svc.obligations["C-1"]["completed"] == ["M1"]
