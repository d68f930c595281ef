"""A short seeded fault campaign over the whole mesh, in every `make test`: every fault kind at least once.

One campaign (about 4 minutes on the 2-core box: ~40 s start-up, 120 s of load and faults, then
quiescence and the checks) runs once per module; each test below asserts one guarantee on its report, so
a regression names the guarantee it broke. The history, logs and report of a failing run are kept in the
directory the failure message names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mesh_chaos.campaign import Options, Outcome, run
from mesh_chaos.nemesis import FAMILIES, expand

# The campaign runs inside the first test that asks for it.
pytestmark = pytest.mark.timeout(900)
SEED = 12
FAULTS = "kill,broker,pg,partner,net,clock"


@pytest.fixture(scope="module")
def campaign() -> Iterator[Outcome]:
    # Its own temp dir (not pytest's, which rotates): removed when the run passes, kept when it fails.
    outcome = run(Options(seed=SEED, duration=120, rate=2.0, faults=FAULTS, replicas={"invoice-validator": 2},
                          quiesce=90, interval=(2.0, 5.0), outage=(3.0, 8.0), pause=(10.0, 12.0)))
    print(outcome.table)
    yield outcome


# Open findings (each reported on its issue); the check stays, marked, until the service is fixed.
NOTIFIER_OPEN = ("open: in one of two runs on this tree, red alerts were still held behind the notifier's SMTP "
                 "circuit (opened after SMTP sessions hung during an SMTP fault; a trial goes through only after "
                 "its reset) when the run ended; quiescence now waits for them up to its bound (ADR 0006)")
OBLIGATION_ENGINE_OPEN = ("open in obligation-engine: in one of three runs a milestone release published during ERP "
                          "outages (with network faults) had not reached the ERP when the run ended; the give-up after "
                          "seconds and the parked completions dead-lettered after kills are fixed (ADR 0012, 0009)")


def _violations(outcome: Outcome, check: str) -> list[dict[str, Any]]:
    return [v for v in outcome.report["violations"] if v["check"] == check]


def _explain(outcome: Outcome, check: str) -> str:
    found = _violations(outcome, check)
    lines = [f"[{v['kind']}] {v['detail']}" for v in found[:15]]
    return f"{len(found)} violation(s) of {check} (seed {SEED}; history in {outcome.workdir}):\n" + "\n".join(lines)


def test_every_fault_kind_was_injected(campaign: Outcome) -> None:
    injected = set(campaign.report["faults"])
    assert injected >= set(expand(FAULTS)), f"not injected: {sorted(set(expand(FAULTS)) - injected)}"
    assert not campaign.report["fault_errors"]


def test_the_workload_ran_and_the_mesh_settled(campaign: Outcome) -> None:
    assert campaign.report["invoices"] >= 10
    assert campaign.report["quiesce_seconds"] is not None, _explain(campaign, "quiescence")
    assert not _violations(campaign, "workload"), _explain(campaign, "workload")


def test_no_process_died_by_itself(campaign: Outcome) -> None:
    assert not _violations(campaign, "processes"), _explain(campaign, "processes")


def test_every_invoice_has_one_verdict_equal_to_the_fault_free_reference(campaign: Outcome) -> None:
    assert not _violations(campaign, "verdicts"), _explain(campaign, "verdicts")


def test_every_registry_change_is_published_once_in_commit_order(campaign: Outcome) -> None:
    assert not _violations(campaign, "registry"), _explain(campaign, "registry")


@pytest.mark.xfail(strict=False, reason=OBLIGATION_ENGINE_OPEN)
def test_obligation_transitions_completions_and_releases_once(campaign: Outcome) -> None:
    assert not _violations(campaign, "obligations"), _explain(campaign, "obligations")


def test_one_crm_opportunity_per_renewal_with_the_latest_stage(campaign: Outcome) -> None:
    assert not _violations(campaign, "renewals"), _explain(campaign, "renewals")


@pytest.mark.xfail(strict=False, reason=NOTIFIER_OPEN)
def test_at_most_one_email_per_alert_recipient_and_kind_and_red_alerts_delivered(campaign: Outcome) -> None:
    assert not _violations(campaign, "notifications"), _explain(campaign, "notifications")


def test_every_service_reaches_the_broker_only_through_its_proxy(campaign: Outcome) -> None:
    """With network faults each service's broker connections cross its toxiproxy route, never around it."""
    assert not _violations(campaign, "network"), _explain(campaign, "network")


def test_dead_letters_carry_their_reason(campaign: Outcome) -> None:
    assert not _violations(campaign, "dead-letters"), _explain(campaign, "dead-letters")


def test_fault_families_cover_the_issue() -> None:
    """Pure: the families expand to the kinds the campaign promises (a kill per service, every outage mode)."""
    assert len(FAMILIES["kill"]) == 5
    assert len(FAMILIES["partner"]) == 12
    assert expand("broker,pg-pause") == ["broker-restart", "broker-kill", "pg-pause"]
    assert expand("net,clock") == ["net-delay", "net-cut", "clock-leap"]
    assert expand("net-cut:notifier") == ["net-cut:notifier"]
    with pytest.raises(ValueError, match="unknown fault kind"):
        expand("net-cut:nobody")
    with pytest.raises(ValueError, match="unknown fault kind"):
        expand("meteor")
