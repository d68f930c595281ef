"""The service layer through bootstrap() with the in-memory read model: idempotency, batches, the table."""

from __future__ import annotations

import pytest
from portfolio import samples as s
from portfolio.adapters.fakes import FakeReader, FakeWriter, MemoryModel
from portfolio.bootstrap import AppConfig, bootstrap
from portfolio.domain.views import Filters
from portfolio.service import HANDLERS, NotFound, PortfolioService
from portfolio.settings import INPUTS

from contract_schema import ClockAdvanced
from contract_schema.renewal import RenewalDecisionKind
from mesh_common.clock import ManualClock


def service() -> tuple[PortfolioService, MemoryModel]:
    model = MemoryModel()
    wiring = bootstrap(AppConfig(clock=ManualClock(s.T0)), writer=lambda: FakeWriter(model), reader=FakeReader(model))
    return wiring.portfolio, model


def test_the_table_covers_exactly_what_the_input_topics_carry() -> None:
    assert set(HANDLERS) == {event for spec in INPUTS for event in spec.events}


def test_a_type_the_portfolio_does_not_read_is_a_value_error_so_it_is_dead_lettered() -> None:
    svc, _ = service()
    with pytest.raises(ValueError, match="reads no"):
        svc.project(s.envelope(ClockAdvanced(now=s.T0)), "mesh.clock.v1")


def test_one_transaction_per_batch_and_redelivery_changes_nothing() -> None:
    svc, model = service()
    envs = [s.envelope(s.snapshot(), "e1"), s.envelope(s.decision(kind=RenewalDecisionKind.TERMINATE), "e2"),
            s.envelope(s.scheduled(), "e3")]
    batch = [svc.project(e, "t") for e in envs]
    assert svc.apply(batch) == 3
    assert model.commits == 1 and model.version == 1
    figures = (svc.pipeline("tenant-a", Filters()).model_dump_json(),
               svc.completion("tenant-a", Filters()).model_dump_json())
    assert svc.apply(batch) == 0  # the same events again (a redelivery)
    assert model.version == 1
    assert (svc.pipeline("tenant-a", Filters()).model_dump_json(),
            svc.completion("tenant-a", Filters()).model_dump_json()) == figures


def test_the_same_id_from_another_source_is_another_event() -> None:
    svc, _ = service()
    assert svc.apply([svc.project(s.envelope(s.snapshot(), "1", source="/a"), "t")]) == 1
    assert svc.apply([svc.project(s.envelope(s.decision(), "1", source="/b"), "t")]) == 1


def test_a_tenant_sees_only_its_own_contracts_and_another_tenants_timeline_is_not_found() -> None:
    svc, _ = service()
    svc.apply([svc.project(s.envelope(s.snapshot("C-A", tenant="tenant-a")), "t"),
               svc.project(s.envelope(s.snapshot("C-B", tenant="tenant-b")), "t")])
    assert [r.contract_id for r in svc.pipeline("tenant-a", Filters()).rows] == ["C-A"]
    assert svc.timeline("tenant-a", "C-A").items[0].type == "ContractSnapshot"
    with pytest.raises(NotFound):
        svc.timeline("tenant-a", "C-B")


def test_the_pipeline_counts_from_the_services_clock_by_default() -> None:
    svc, _ = service()
    svc.apply([svc.project(s.envelope(s.snapshot(days_to_deadline=31)), "t")])
    assert svc.pipeline("tenant-a", Filters()).rows[0].bucket == "31-60"


def test_a_notification_is_seen_only_by_the_tenant_whose_alert_it_is() -> None:
    from contract_schema import NotificationKind

    svc, _ = service()
    svc.apply([svc.project(s.envelope(e), "t") for e in (
        s.snapshot("C-1", tenant="tenant-a"), s.snapshot("C-1", tenant="tenant-b"),
        s.alert("A-b", tenant="tenant-b", contract_id="C-1"),
        s.notification("A-b", NotificationKind.ACKNOWLEDGED, contract_id="C-1"))])
    assert [i.type for i in svc.timeline("tenant-a", "C-1").items] == ["ContractSnapshot"]
    assert {i.type for i in svc.timeline("tenant-b", "C-1").items} == {"ContractSnapshot", "Alert",
                                                                       "NotificationRecorded"}
    assert svc.alerts("tenant-a", Filters()).acknowledged == 0
    assert svc.alerts("tenant-b", Filters()).acknowledged == 1


def test_the_same_event_twice_in_one_batch_counts_once() -> None:
    svc, model = service()
    p = svc.project(s.envelope(s.scheduled(), "same"), "t")
    assert svc.apply([p, p]) == 1
    assert len(model.events) == 1
