"""The demo's own logic, without a mesh: its data is valid for the schemas, and a step whose service is
absent reports FAIL "service missing" instead of crashing the story."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from mesh_sim.demo import Demo, consulting_line, contract_bodies, milestone_line, spans_by_trace, table
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contract_schema.base import Person
from contract_schema.contract import ContractTerms, Party
from contract_schema.invoice import InvoiceLine

TODAY = date(2030, 5, 17)


def test_demo_contracts_are_valid_contract_terms_with_the_story_dates() -> None:
    bodies = contract_bodies("abc123", TODAY)
    assert set(bodies) == {"milestone", "sla", "auto-renew"}
    for body in bodies.values():
        terms = ContractTerms.model_validate({**body["terms"], "version": 1, "effective_from": body["terms"]
                                              ["effective_date"]})
        Party.model_validate(body["counterparty"])
        Person.model_validate(body["owner"])
        assert terms.effective_date < TODAY < terms.end_date  # active on demo day 0
    milestone = ContractTerms.model_validate({**bodies["milestone"]["terms"], "version": 1,
                                              "effective_from": bodies["milestone"]["terms"]["effective_date"]})
    assert {o.obligation_id for o in milestone.obligations} == {"M1", "M2"}
    renewing = ContractTerms.model_validate({**bodies["auto-renew"]["terms"], "version": 1,
                                             "effective_from": bodies["auto-renew"]["terms"]["effective_date"]})
    assert renewing.auto_renew
    # The notice deadline falls 140 days out, so the 120/90/60/30-day stages fall on days 20, 50, 80, 110:
    # the demo moves the clock to days 21, 51, 81 and 111.
    assert renewing.end_date is not None
    assert (renewing.end_date - TODAY).days - renewing.notice_period_days == 140


def test_demo_invoice_lines_are_valid_and_add_up() -> None:
    correct = InvoiceLine.model_validate(consulting_line(TODAY, 10, "150.00"))
    overbilled = InvoiceLine.model_validate(consulting_line(TODAY, 20, "180.00"))
    milestone = InvoiceLine.model_validate(milestone_line(TODAY))
    assert correct.quantity * correct.unit_price == correct.amount
    assert overbilled.quantity * overbilled.unit_price == overbilled.amount
    assert milestone.milestone_ref == "M1"


def test_a_step_without_its_service_fails_with_service_missing_and_the_run_exits_1() -> None:
    demo = Demo(bootstrap="127.0.0.1:1", timeout=1)
    demo.healthy = {"erp-simulator"}  # no invoice-validator
    assert demo.step("Invoice: correct", "approved", demo.invoice_correct) is False
    assert demo.step("Broken", "anything", lambda: 1 / 0) is False  # type: ignore[arg-type,return-value]
    [missing, broken] = demo.outcomes
    assert (missing.ok, missing.observed) == (False, "service missing: invoice-validator")
    assert broken.observed.startswith("error: ZeroDivisionError")
    assert demo.summary() == 1


def test_summary_table_wraps_long_cells_inside_their_columns() -> None:
    out = table([("#", "step"), ("1", "a step with a rather long name")], widths=(3, 10))
    lines = out.splitlines()
    assert lines[0].startswith("#   | step")
    assert all(len(line) <= 3 + 3 + 10 for line in lines)
    assert "a step" in out and "long name" in out


def test_spans_from_several_processes_are_grouped_by_trace_id(tmp_path: Path) -> None:
    """Real OpenTelemetry spans, exported as services.sh configures them (one JSON span a line per service)."""
    since = datetime.now(UTC)
    carrier: dict[str, str] = {}
    files = []
    for n, service in enumerate(("contract-registry", "invoice-validator", "notifier")):
        path = tmp_path / f"{service}.jsonl"
        files.append(path)
        with path.open("a", buffering=1) as out:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(SimpleSpanProcessor(
                ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")))
            parent = TraceContextTextMapPropagator().extract(carrier) if n else None
            with provider.get_tracer("test").start_as_current_span(f"{service} work", context=parent):
                if not n:
                    TraceContextTextMapPropagator().inject(carrier)  # what goes into the Kafka headers
            with provider.get_tracer("test").start_as_current_span("unrelated"):
                pass
            provider.shutdown()
    traces = spans_by_trace(files, since=since)
    shared = [services for services in traces.values() if len(services) == 3]
    assert shared == [{"contract-registry", "invoice-validator", "notifier"}]
    assert spans_by_trace(files, since=datetime.now(UTC) + timedelta(seconds=5)) == {}
