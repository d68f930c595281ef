"""The runner: the chapters in the order of the story, the start-up steps and the summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .alerts import Alerts
from .contracts import Contracts
from .obligations import Obligations
from .outcomes import StepFailed
from .output import say, styled, table
from .renewals import Renewals
from .stack import bring_up, kafka_answers, latest_tick
from .tracing import Tracing
from .watcher import TopicWatcher


class Demo(Contracts, Obligations, Renewals, Alerts, Tracing):
    """The whole story; `run_story` runs every step and returns the exit code."""

    def bring_up(self) -> str:
        self.healthy, self.answered, problem = bring_up(self.bootstrap, self.http, self.timeout)
        if problem:
            raise StepFailed(problem)
        return "5 services and 3 simulators answer /healthz"

    def start_clock(self) -> str:
        latest = latest_tick(self.bootstrap)
        start = max(datetime.now(UTC), latest + timedelta(days=1) if latest else datetime.now(UTC))
        self.today = start.date() + timedelta(days=1)
        self.watcher = TopicWatcher(self.bootstrap, self.ours).start()
        self.clock_to(self.at(0))
        return f"demo day 0 = {self.today} (previous tick {latest.isoformat() if latest else 'none'})"

    def run_story(self) -> int:
        say(styled("1", f"contract mesh demo, run {self.run}"))
        if not self.step("Mesh running", "Kafka, PostgreSQL, 5 services, 3 simulators", self.bring_up):
            if not kafka_answers(self.bootstrap):
                return self.summary()
        self.step("Shared clock set", "ClockAdvanced on mesh.clock.v1; every service follows it", self.start_clock)
        self.step("Contracts registered", "milestone, SLA and auto-renewing contracts created and activated via REST",
                  self.register_contracts)
        self.step("Invoice: correct", "approved", self.invoice_correct)
        self.step("Invoice: overbilled", "rejected PRICE_ABOVE_CONTRACT", self.invoice_overbilled)
        self.step("Invoice: milestone not completed", "rejected MILESTONE_NOT_COMPLETED", self.invoice_milestone_early)
        self.step("Invoice: duplicate", "rejected DUPLICATE_INVOICE", self.invoice_duplicate)
        self.step("AP receives the verdicts", "4 HMAC-signed verdict webhooks at the ERP/AP simulator",
                  self.ap_received_verdicts)
        self.step("ERP completes milestone M1", "ObligationCompleted; the registry shows M1 completed",
                  self.erp_completes_milestone)
        self.step("Milestone invoice re-sent", "approved (new invoice number)", self.milestone_invoice_passes)
        self.step("Contract-side milestone M2", "release call at the ERP simulator, no echo back",
                  self.contract_side_milestone)
        self.step("SLA measurement below target", "SlaBreached with a service credit", self.sla_breach)
        for stage, day in (("120d", 21), ("90d", 51), ("60d", 81), ("30d", 111)):
            self.step(f"Clock -> day {day}: renewal {stage}", f"opportunity upserted in the CRM at stage {stage}",
                      self.renewal_stage(stage, day))
        self.step("Tiered alerts by e-mail", "red, yellow and green-digest e-mails in the SMTP catcher",
                  self.tiered_alerts)
        self.step("CRM decision stops escalation", "no escalation to the backup after the decision",
                  self.decision_stops_escalation)
        self.step("One trace across the mesh", "spans of >= 3 services share one trace id (traceparent in headers)",
                  self.one_trace)
        return self.summary()

    def summary(self) -> int:
        if self.watcher is not None:
            self.watcher.stop()
        self.sender.close()
        say()
        say(styled("1", "Summary"))
        rows: list[tuple[str, ...]] = [("#", "step", "expected", "observed", "result")]
        rows += [(str(i), o.step, o.expected, o.observed, "OK" if o.ok else "FAIL")
                 for i, o in enumerate(self.outcomes, 1)]
        say(table(rows))
        passed = sum(o.ok for o in self.outcomes)
        say(f"{passed}/{len(self.outcomes)} steps OK")
        return 0 if passed == len(self.outcomes) else 1
