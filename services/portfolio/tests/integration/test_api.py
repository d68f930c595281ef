"""Events in through the real broker, figures out over real HTTP: panels 1 and 2, their CSV, the timeline,
redelivery, dead letters, tenants and bad input."""

from __future__ import annotations

import csv
import io
import time
from datetime import timedelta
from decimal import Decimal

import httpx
from portfolio import samples as s

from contract_schema import NotificationKind, Tier, VerdictStatus
from contract_schema.obligation import Scorecard, ScorecardScope
from contract_schema.renewal import RenewalDecisionKind
from mesh_common.dlq import read_dead_letter
from mesh_testing import consume_all, wait_for

from .conftest import Portfolio, token

PIPELINE, OBLIGATIONS = "/v1/portfolio/pipeline", "/v1/portfolio/obligations"


def story(p: Portfolio, tenant: str) -> None:
    """Three EUR contracts and one USD contract inside 120 days, a CRM stage, a decision, four obligations."""
    p.publish(
        s.snapshot("C-1", tenant=tenant, days_to_deadline=10, value="1000"),
        s.snapshot("C-2", tenant=tenant, days_to_deadline=20, value="2000", auto_renew=True, notice=0),
        s.snapshot("C-3", tenant=tenant, days_to_deadline=75, value="4000", party="globex", contract_type="sow"),
        s.snapshot("C-4", tenant=tenant, days_to_deadline=100, value="500", currency="USD"),
        s.opportunity("C-1", tenant=tenant),
        s.decision("C-2", tenant=tenant, kind=RenewalDecisionKind.RENEW),
        s.completed("C-1", "a#1", tenant=tenant, on_time=True),
        s.completed("C-1", "a#2", tenant=tenant, on_time=False),
        s.overdue("C-3", "b#1", tenant=tenant),
        s.scheduled("C-3", "b#2", tenant=tenant, due_in_days=5),
    )


def settled(p: Portfolio, tenant: str) -> tuple[dict[str, object], dict[str, object]]:
    pipe = p.until(PIPELINE, tenant, lambda j: len(j["rows"]) == 4 and any(r["decision"] for r in j["rows"])
                   and any(r["crm_stage"] for r in j["rows"]))
    done = p.until(OBLIGATIONS, tenant, lambda j: sum(j["total"][k] for k in ("on_time", "late", "overdue", "open"))
                   == 4)
    return pipe, done


def test_the_pipeline_and_completion_panels_from_published_events(portfolio: Portfolio, tenant: str) -> None:
    story(portfolio, tenant)
    pipe, done = settled(portfolio, tenant)
    assert pipe["as_of"] == str(s.TODAY)
    counts = {b["bucket"]: b["contracts"] for b in pipe["buckets"]}
    assert counts == {"0-30": 2, "31-60": 0, "61-90": 1, "91-120": 1}
    first = pipe["buckets"][0]["money"]
    assert first == [{"currency": "EUR", "total": "3000.00", "at_risk": "1000.00", "secured": "2000.00",
                      "renegotiating": "0.00", "walking_away": "0.00"}]
    assert [(m["currency"], m["total"]) for m in pipe["totals"]] == [("EUR", "7000.00"), ("USD", "500.00")]
    assert pipe["untracked_notice"] == 1
    c1 = next(r for r in pipe["rows"] if r["contract_id"] == "C-1")
    assert (c1["crm_stage"], c1["owner"], c1["backup_owner"]) == ("60d", "olivia@example.com", "ben@example.com")

    assert {k: done["total"][k] for k in ("on_time", "late", "overdue", "open")} == {
        "on_time": 1, "late": 1, "overdue": 1, "open": 1}
    assert [(c["key"], c["on_time_rate"]) for c in done["by_counterparty"]] == [("acme", "0.5000"),
                                                                               ("globex", None)]
    assert [c["key"] for c in done["by_contract_type"]] == ["msa", "sow"]
    assert (done["due_next_7_days"], done["due_next_30_days"]) == (1, 1)

    only_sow = portfolio.json(PIPELINE, tenant, contract_type="sow")
    assert [r["contract_id"] for r in only_sow["rows"]] == ["C-3"]


def test_csv_exports_carry_the_same_figures(portfolio: Portfolio, tenant: str) -> None:
    story(portfolio, tenant)
    pipe, done = settled(portfolio, tenant)
    response = portfolio.get(PIPELINE + ".csv", tenant)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["contract_id"], r["annual_value"], r["currency"]) for r in rows] == [
        (r["contract_id"], r["annual_value"], r["currency"]) for r in pipe["rows"]]  # type: ignore[attr-defined]
    groups = {r["key"]: r for r in csv.DictReader(io.StringIO(portfolio.get(OBLIGATIONS + ".csv", tenant).text))}
    assert groups["counterparty:acme"]["on_time"] == "1" and groups["contract_type:sow"]["overdue"] == "1"
    assert groups["all:all"]["open"] == str(done["total"]["open"])  # type: ignore[index]


def test_redelivered_records_change_nothing(portfolio: Portfolio, tenant: str) -> None:
    story(portfolio, tenant)
    before = settled(portfolio, tenant)
    timeline = portfolio.json("/v1/portfolio/contracts/C-1/timeline", tenant)
    portfolio.resend(10)  # the whole story again, same ids and bytes
    wait_for(portfolio.caught_up, timeout=30, message="the service read the redelivered records")
    assert settled(portfolio, tenant) == before
    assert portfolio.json("/v1/portfolio/contracts/C-1/timeline", tenant) == timeline


def test_the_timeline_lists_every_event_of_the_contract_in_order(portfolio: Portfolio, tenant: str) -> None:
    story(portfolio, tenant)
    settled(portfolio, tenant)
    items = portfolio.until("/v1/portfolio/contracts/C-1/timeline", tenant, lambda j: len(j["items"]) == 4)["items"]
    assert sorted(i["type"] for i in items) == ["ContractSnapshot", "ObligationCompleted", "ObligationCompleted",
                                                "RenewalOpportunity"]
    assert [i["occurred_at"] for i in items] == sorted(i["occurred_at"] for i in items)


def test_a_record_the_portfolio_cannot_read_goes_to_the_dlq_with_its_bytes_and_reason(portfolio: Portfolio,
                                                                                    tenant: str) -> None:
    topic = portfolio.prefix + "clm.contract.state.v1"
    portfolio.producer.produce(topic, key=b"C-bad", value=b"{not json", headers=[
        ("ce_specversion", b"1.0"), ("ce_id", b"bad-1"), ("ce_source", b"/x"),
        ("ce_type", b"contractmesh.ContractSnapshot")])
    portfolio.producer.flush(10)
    letters = [m for m in consume_all(portfolio.bootstrap, topic + ".dlq", 1) if m.key() == b"C-bad"]
    assert letters and letters[0].value() == b"{not json"
    assert "not JSON" in read_dead_letter(letters[0].headers()).reason
    portfolio.publish(s.snapshot("C-after", tenant=tenant))  # and the consumer goes on
    portfolio.until(PIPELINE, tenant, lambda j: [r["contract_id"] for r in j["rows"]] == ["C-after"])


def test_one_tenant_never_sees_another_tenants_data(portfolio: Portfolio, tenant: str) -> None:
    other = tenant + "-other"
    portfolio.publish(s.snapshot("C-mine", tenant=tenant), s.snapshot("C-theirs", tenant=other))
    portfolio.until(PIPELINE, other, lambda j: len(j["rows"]) == 1)
    mine = portfolio.until(PIPELINE, tenant, lambda j: len(j["rows"]) == 1)
    assert [r["contract_id"] for r in mine["rows"]] == ["C-mine"]
    assert portfolio.get("/v1/portfolio/contracts/C-theirs/timeline", tenant).status_code == 404
    assert portfolio.get("/v1/portfolio/contracts/C-theirs/timeline", other).status_code == 200


def test_tokens_and_bad_parameters(portfolio: Portfolio, tenant: str) -> None:
    url = portfolio.base_url + PIPELINE
    assert httpx.get(url).status_code == 401
    wrong_scope = httpx.get(url, headers={"Authorization": f"Bearer {token(tenant, ('contracts:read',))}"})
    assert wrong_scope.status_code == 403
    bad = portfolio.get(PIPELINE, tenant, as_of="yesterday")
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "as_of"
    naive = portfolio.get(OBLIGATIONS, tenant, as_of="2027-01-01T00:00:00")
    assert naive.status_code == 422 and "as_of" in naive.text


def test_invoice_alert_and_summary_panels_from_published_events(portfolio: Portfolio, tenant: str) -> None:
    portfolio.publish(
        s.snapshot("C-1", tenant=tenant, days_to_deadline=10, value="1000"),
        s.verdict("I-1", tenant=tenant, billed="1000", expected="1000"),
        s.verdict("I-2", tenant=tenant, status=VerdictStatus.REJECTED, billed="1500", expected="1000",
                  prevented="500", reasons=("price.above_contract",)),
        s.verdict("I-3", tenant=tenant, status=VerdictStatus.NEEDS_REVIEW, billed="80", expected="0"),
        s.alert("A-1", tenant=tenant), s.alert("A-2", tenant=tenant, tier=Tier.YELLOW),
        s.notification("A-2", NotificationKind.ACKNOWLEDGED, at=s.T0 + timedelta(minutes=10)),
        s.notification("A-1", NotificationKind.ESCALATED, at=s.T0 + timedelta(hours=4)),
    )
    bills = portfolio.until("/v1/portfolio/invoices", tenant, lambda j: len(j["review_queue"]) == 1
                            and sum(m["approved"] + m["rejected"] for m in j["by_month"]) == 2)
    assert bills["prevented_this_month"] == [{"currency": "EUR", "amount": "500.00"}]
    assert bills["top_reasons"] == [{"code": "price.above_contract", "invoices": 1}]
    board = portfolio.until("/v1/portfolio/alerts", tenant, lambda j: j["acknowledged"] == 1 and j["escalated"] == 1)
    assert (board["red_open"], board["yellow_open"], board["ack_seconds_median"]) == (1, 0, 600.0)
    figures = {f["name"]: f["value"] for f in portfolio.json("/v1/portfolio/summary", tenant)["figures"]}
    assert figures["overpayment prevented this month (EUR)"] == "500.00"
    assert figures["open red alerts"] == "1" and figures["invoices waiting for review"] == "1"
    rows = list(csv.DictReader(io.StringIO(portfolio.get("/v1/portfolio/invoices.csv", tenant).text)))
    assert {r["key"] for r in rows} == {"month:2027-01", "vendor:V-1"}
    open_alerts = list(csv.DictReader(io.StringIO(portfolio.get("/v1/portfolio/alerts.csv", tenant).text)))
    assert [(a["alert_id"], a["escalations"]) for a in open_alerts] == [("A-1", "1")]


def test_the_vendor_scorecard_panel_from_published_scorecards(portfolio: Portfolio, tenant: str) -> None:
    cid = f"C-{tenant}"  # scorecards carry no tenant: they are found through a contract id (a UUID in the mesh)
    card = Scorecard(scorecard_id=f"acme/{cid}", scope=ScorecardScope.CONTRACT, counterparty_id="acme",
                     contract_id=cid, window_start=s.TODAY - timedelta(days=365), window_end=s.TODAY,
                     sla_measurements=10, sla_met=8, credits_earned=Decimal("120"), currency="EUR", updated_at=s.T0)
    portfolio.publish(s.snapshot(cid, tenant=tenant), card, s.alert("A-1", tenant=tenant, contract_id=cid))
    view = portfolio.until("/v1/portfolio/vendors", tenant, lambda j: j["counterparties"]
                           and j["counterparties"][0]["sla_measurements"] == 10
                           and j["counterparties"][0]["open_red_alerts"] == 1)
    acme = view["counterparties"][0]
    assert (acme["sla_attainment"], acme["credits_earned"], acme["level"]) == (
        "0.8000", [{"currency": "EUR", "amount": "120.00"}], "high")
    assert acme["reasons"] == ["SLAs met in under 90 % of windows", "a red alert is open",
                               "SLAs met in under 98 % of windows"]
    rows = list(csv.DictReader(io.StringIO(portfolio.get("/v1/portfolio/vendors.csv", tenant).text)))
    assert [(r["counterparty_id"], r["level"]) for r in rows] == [("acme", "high")]
    assert portfolio.json("/v1/portfolio/vendors", tenant + "-x")["counterparties"] == []


def test_the_event_stream_sends_the_model_version_and_ends_by_itself(portfolio: Portfolio, tenant: str) -> None:
    started = time.monotonic()
    with httpx.stream("GET", portfolio.base_url + "/v1/portfolio/stream", timeout=10,
                      headers={"Authorization": f"Bearer {token(tenant)}"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[0] == "retry: 500" and lines[1].startswith("data: ") and int(lines[1][6:]) >= 0
    assert time.monotonic() - started < 8  # stream_seconds=2 in these tests
