"""The validator's one composition root: its changelog and internal topics, the clock, the Faust app with
its tables, topics, agents and timers, the state fence, and the service (`service.ValidatorService` and its
handler table) that the agents hand every record to.

Agents stay thin (adapters/agents.py): a record in -> decoded, or dead-lettered -> the service. Faust's
guarantee is at-least-once (never exactly_once: docs/adr/0001); offsets are committed only once every
effect and table record sent before is acked (`DeliveryBarrier`, docs/adr/0005)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from contract_schema.topics import ALERTS, CONTRACT_STATE, INVOICE_RECEIVED, INVOICE_VALIDATED, OBLIGATION_EVENTS
from mesh_common.clock import Clock, ClockFollower
from mesh_common.faust_delivery import CrashMarker, DeliveryBarrier, StallWatch, seek_safely_after_rebalance
from mesh_common.provision import provision
from mesh_common.runtime import make_clock
from mesh_common.settings import KafkaSettings, ServiceSettings

from .adapters.agents import Agents
from .adapters.faust_app import build_app, changelog_topics, raw_topic
from .adapters.state_fence import faust_fence
from .adapters.webhook import ApWebhook
from .service import ValidatorService
from .settings import SERVICE, ValidatorSettings

log = logging.getLogger(__name__)


def prepare_topics(settings: ValidatorSettings, kafka: KafkaSettings) -> None:
    """The tables' changelogs and the internal topics, before Faust starts (adapters/faust_app.py says why)."""
    for drift in provision(kafka.admin(), changelog_topics(settings)).drift:
        logging.getLogger(SERVICE).warning("topic drift: %s", drift)


def validator_clock(service: ServiceSettings, settings: ValidatorSettings,
                    kafka: KafkaSettings) -> tuple[Clock, ClockFollower | None]:
    return make_clock(service, kafka, group_id=f"{settings.app_id}-clock", topic=settings.clock_topic)


@dataclass
class Wiring:
    app: faust.App
    service: ValidatorService
    agents: Agents
    delivery: DeliveryBarrier
    crash_marker: CrashMarker

    def ready(self) -> bool:
        return self.agents.ready

    def run(self, log_level: str) -> None:
        """Faust's worker, in this thread, until it is stopped."""
        self.crash_marker.start()
        worker = faust.Worker(self.app, loglevel=log_level, quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            # Clean only when the worker stopped normally with every send acknowledged: then the local
            # store equals its changelogs and the next start may reuse it.
            if not exc.code and self.delivery.pending == 0:
                self.crash_marker.stopped_cleanly()
            raise


def bootstrap(settings: ValidatorSettings, kafka: KafkaSettings, clock: Clock) -> Wiring:
    app, data_dir = build_app(settings, kafka)
    n = settings.topic_partitions
    delivery = DeliveryBarrier()
    delivery.install(app.producer)
    crash_marker = CrashMarker(data_dir, Path(app.conf.tabledir))

    def table(name: str) -> Any:
        return app.Table(name, default=None, partitions=n)

    contracts, obligations, verdicts = table("contracts"), table("obligations"), table("verdicts")
    parked, vendors = table("parked"), table("vendors")
    webhook = ApWebhook(settings.ap_webhook_url, settings.ap_webhook_secret) if settings.ap_webhook_url else None

    invoices_topic = raw_topic(app, settings.topic_prefix + INVOICE_RECEIVED.name)
    state_topic = raw_topic(app, settings.topic_prefix + CONTRACT_STATE.name)
    obligation_topic = raw_topic(app, settings.topic_prefix + OBLIGATION_EVENTS.name)
    verdict_topic = raw_topic(app, settings.topic_prefix + INVOICE_VALIDATED.name)
    alert_topic = raw_topic(app, settings.topic_prefix + ALERTS.name)
    expiry_topic = raw_topic(app, f"{settings.app_id}-park-expiry", partitions=n, internal=True)
    vendor_topic = raw_topic(app, f"{settings.app_id}-vendor-directory", partitions=n, internal=True)
    routed_topic = raw_topic(app, f"{settings.app_id}-invoices-by-contract", partitions=n, internal=True)
    svc = ValidatorService(settings=settings, clock=clock, delivery=delivery, contracts=contracts,
                           obligations=obligations, verdicts=verdicts, parked=parked, vendors=vendors,
                           verdict_topic=verdict_topic, alert_topic=alert_topic, expiry_topic=expiry_topic,
                           vendor_topic=vendor_topic, routed_topic=routed_topic, webhook=webhook)
    # An invoice is decided only once the state partition it meets has been processed up to where it
    # ended when the invoice was sent (docs/adr/0011): the two agents have no order between them.
    fence = faust_fence(app, settings.topic_prefix + CONTRACT_STATE.name)
    inputs = {t.get_topic_name() for t in (invoices_topic, state_topic, obligation_topic,
                                           expiry_topic, vendor_topic, routed_topic)}
    watch = StallWatch(app, delivery, inputs)
    agents = Agents(app, svc, fence, watch, clock)

    contracts.on_recover(svc._on_contracts_recovered)
    parked.on_recover(svc._on_parked_recovered)
    verdicts.on_recover(svc._on_verdicts_recovered)
    app.agent(invoices_topic, name="invoices")(agents.invoices)
    app.agent(state_topic, name="contract-state")(agents.contract_state)
    app.agent(obligation_topic, name="obligations")(agents.obligations)
    app.agent(expiry_topic, name="park-expiry")(svc._expiry_agent)
    app.agent(vendor_topic, name="vendor-directory")(agents.vendor_directory)
    app.agent(routed_topic, name="invoices-by-contract")(agents.invoices_by_contract)
    app.timer(settings.sweep_interval_seconds, name="park-sweep")(svc._sweep)
    # A partition nobody has committed yet (a worker killed before its first commit) is read from
    # its start after a rebalance; Faust would otherwise skip what it fetched while recovering.
    seek_safely_after_rebalance(app.consumer, inputs)
    app.timer(30.0, name="stall-watch")(agents.stall_watch)

    async def _ready(sender: Any, **kwargs: Any) -> None:
        agents.ready = True

    async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        fence.reset()

    app.on_rebalance_complete.connect(_ready)  # type: ignore[arg-type]
    app.on_partitions_revoked.connect(_revoked)  # type: ignore[arg-type]
    return Wiring(app, svc, agents, delivery, crash_marker)
