"""The checker: after the faults stop and the mesh is quiet, read the history and say what broke.

Each check adds counts (inputs, effects) and violations (lost, duplicated, divergent, other). An effect is
"duplicated" when one logical effect has several distinct ce_ids (a re-sent record with the same ce_id is
at-least-once delivery, which consumers drop, and is only counted as `redelivered`). The checks, one
module per guarantee family, are in `mesh_chaos.checks`.
"""

from __future__ import annotations

from .checks import notifications, obligations, registry, renewals, resilience, verdicts
from .checks.notifications import unhandled_red_alerts
from .checks.renewals import STAGE_DAYS, owed_stages
from .checks.report import EFFECT_TOPICS, Report, Violation, p99
from .checks.verdicts import same_verdict
from .flood import Flood
from .harness import Mesh
from .history import History
from .nemesis import Fault
from .workload import Workload

__all__ = ["EFFECT_TOPICS", "STAGE_DAYS", "Checker", "Report", "Violation", "owed_stages", "p99", "same_verdict",
           "unhandled_red_alerts"]


class Checker:
    def __init__(self, mesh: Mesh, history: History, workload: Workload, faults: list[Fault],
                 flood: Flood | None = None) -> None:
        self.mesh, self.h, self.w, self.faults, self.fl = mesh, history, workload, faults, flood
        self.r = Report()

    def run(self) -> Report:
        for check in (self.verdicts, self.registry, self.obligations, self.renewals, self.notifications,
                      self.dead_letters, self.recovery, self.flood):
            try:
                check()
            except Exception as exc:  # a check that cannot run is itself a failure, named
                self.r.add(check.__name__, "broken", f"{type(exc).__name__}: {exc}")
        for op in self.w.sent:
            self.r.inputs[op.op] += 1
        for topic in EFFECT_TOPICS.values():
            self.r.effects[topic] = len(self.h.on(topic))
        return self.r

    # The method names are the check names a violation of a check that cannot run is reported under.

    def verdicts(self) -> None:
        """One verdict per invoice, the reference's verdict."""
        verdicts.verdicts(self.r, self.h, self.w)

    def registry(self) -> None:
        """Every committed change on clm.contract.events.v1 once, in order; compacted state = database."""
        registry.registry(self.r, self.h, self.mesh)

    def obligations(self) -> None:
        """Obligation transitions, completions, releases, SLA breaches once."""
        obligations.obligations(self.r, self.h, self.w, self.mesh)

    def renewals(self) -> None:
        """Renewal stages once, one CRM opportunity per contract with the latest stage."""
        renewals.renewals(self.r, self.h, self.w, self.mesh)

    def notifications(self) -> None:
        """At most one e-mail per (alert, recipient, kind); every red alert handled."""
        notifications.notifications(self.r, self.h, self.mesh)

    def dead_letters(self) -> None:
        resilience.dead_letters(self.r, self.h)

    def recovery(self) -> None:
        """Recovery: from the end of a fault to the first new effect."""
        resilience.recovery(self.r, self.h, self.faults)

    def flood(self) -> None:
        """Malformed flood: every record in its DLQ with a reason; valid traffic as fast as before."""
        resilience.flood(self.r, self.h, self.w, self.fl)
