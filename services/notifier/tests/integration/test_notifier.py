"""The notifier end to end: real Kafka, PostgreSQL, SMTP and webhook receivers on loopback."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import icalendar
from confluent_kafka.admin import AdminClient
from notifier.domain.calendar import feed_token
from notifier.settings import DEFAULT_RULES

from contract_schema.alert import Alert, NotificationKind, Tier
from contract_schema.base import Link, Person
from contract_schema.codec import encode
from contract_schema.renewal import RenewalDecision, RenewalDecisionKind
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.dlq import read_dead_letter
from mesh_common.dlq_tool import replay
from mesh_common.settings import KafkaSettings
from mesh_common.signing import verify
from mesh_testing import unique_name, wait_for

from .conftest import T0, Mesh, body_text, notifications, notifier_argv

OWNER = "olivia@example.com"
BACKUP = "bob@example.com"


def alert(alert_type: str, contract: str, *, stage: str = "x", tier: Tier = Tier.YELLOW, alert_id: str | None = None,
          deadline_days: float | None = 3, **extra: Any) -> Alert:
    fields: dict[str, Any] = dict(
        alert_id=alert_id or unique_name("al"), tenant_id="t1", contract_id=contract, alert_type=alert_type,
        tier=tier, title=f"{alert_type} for {contract}", what=f"{alert_type} happened on {contract}",
        deadline=T0 + timedelta(days=deadline_days) if deadline_days is not None else None,
        owner=Person(name="Olivia Owner", email=OWNER, timezone="Europe/Berlin"),
        backup_owner=Person(name="Bob Backup", email=BACKUP),
        amount_at_stake=Decimal("4200.00"), currency="EUR",
        links=(Link(title="Contract", url=f"https://clm.example/contracts/{contract}"),),
        dedup_key=f"{alert_type}:{contract}:{stage}", source_service="test", raised_at=T0)
    fields.update(extra)
    return Alert(**fields)


def kinds(mesh: Mesh, reader: Any, alert_id: str) -> list[NotificationKind]:
    return [n.kind for n in notifications(reader.drain()) if n.alert_id == alert_id]


def test_tiering_by_the_shipped_rules(mesh: Mesh) -> None:
    mesh.extra_env["NOTIFIER_CONSUMERS"] = "2"  # two consumer threads share the alert partitions
    mesh.start()
    contract = unique_name("C")
    red = alert("sla.breached", contract, tier=Tier.GREEN)  # the rules, not the sender, decide the tier
    yellow = alert("obligation.due_soon", contract, tier=Tier.RED)
    green = alert("obligation.completed", contract, stage="ob-9", tier=Tier.RED)
    for a in (red, yellow, green):
        mesh.send(a)
    reader = mesh.reader()
    reader.wait(lambda ms: {n.alert_id for n in notifications(ms)} >= {red.alert_id, yellow.alert_id},
                what="deliveries recorded")
    wait_for(lambda: len(mesh.smtp.about(contract)) >= 3, timeout=20, message="three e-mails")
    red_mail = [(r, m) for r, m in mesh.smtp.about(contract) if "sla.breached" in str(m["Subject"])]
    # red: owner and legal by e-mail, and the Slack channel
    assert sorted(r[0] for r, _ in red_mail) == ["legal@example.com", OWNER]
    assert all(str(m["Subject"]).startswith("[RED]") for _, m in red_mail), [m["Subject"] for _, m in red_mail]
    assert any(contract in p["text"] for _, p in mesh.http.to("/slack"))
    # yellow: the owner by e-mail only
    yellow_mail = [(r, m) for r, m in mesh.smtp.about(contract) if "obligation.due_soon" in str(m["Subject"])]
    assert [r for r, _ in yellow_mail] == [[OWNER]]
    assert str(yellow_mail[0][1]["Subject"]).startswith("[YELLOW]")
    # green: nothing now (it waits for the digest)
    assert not [m for _, m in mesh.smtp.about(contract) if "obligation.completed" in str(m["Subject"])]
    text = body_text(red_mail[0][1])
    for expected in ("Deadline:", "in 3 days", "Required action: Claim the service credit", "Olivia Owner",
                     "4,200.00 EUR", f"https://clm.example/contracts/{contract}", "/ack?exp="):
        assert expected in text, expected
    assert red_mail[0][1].get_body(preferencelist=("html",)) is not None
    delivered = [n for n in notifications(reader.drain()) if n.alert_id == red.alert_id]
    assert {(n.kind, n.channel) for n in delivered} == {(NotificationKind.DELIVERED, "email"),
                                                       (NotificationKind.DELIVERED, "slack")}
    reader.close()


def test_duplicates_are_suppressed_and_counted(mesh: Mesh) -> None:
    mesh.start()
    contract = unique_name("C")
    first = alert("invoice.overbilled", contract, stage="INV-1", tier=Tier.RED)
    repeats = [alert("invoice.overbilled", contract, stage="INV-1", tier=Tier.RED) for _ in range(3)]
    for a in (first, *repeats):
        mesh.send(a)
    mesh.send(first)  # a redelivery of the same alert is neither a second e-mail nor a suppression
    reader = mesh.reader()
    last = repeats[-1].alert_id
    suppressed = reader.wait(lambda ms: [n for n in notifications(ms) if n.kind is NotificationKind.SUPPRESSED
                                         and n.contract_id == contract and n.alert_id == last],
                             what="suppression of the last repeat")
    assert "suppressed so far: 3" in suppressed[0].detail
    assert first.alert_id in suppressed[0].detail
    assert len(mesh.smtp.to(OWNER)) == 1  # one e-mail to the owner for four alerts
    token = issue_token(AuthSettings(), subject="tester", tenant="t1", scopes=["alerts:read"])
    state = httpx.get(f"{mesh.base_url}/v1/alerts/{first.alert_id}",
                      headers={"Authorization": f"Bearer {token}"}).json()
    assert state["suppressed_in_thread"] == 3 and state["tier"] == "red"
    metrics = httpx.get(f"{mesh.base_url}/metrics").text
    assert re.search(r'notifier_alerts_suppressed_total\{tier="red"\} 3\.0', metrics)
    topic = re.escape(mesh.alerts_topic)
    lag = re.compile(rf'mesh_consumer_lag\{{partition="\d",service="notifier",topic="{topic}"\}} 0\.0')
    wait_for(lambda: lag.search(httpx.get(f"{mesh.base_url}/metrics").text), timeout=20, message="consumer lag gauge")
    reader.close()


def test_escalation_to_backup_without_ack_and_none_after_ack(mesh: Mesh) -> None:
    mesh.start()
    contract = unique_name("C")
    ignored = alert("sla.breached", contract, stage="uptime", tier=Tier.RED)
    acked_api = alert("sla.breached", contract, stage="latency", tier=Tier.RED)
    acked_link = alert("sla.breached", contract, stage="errors", tier=Tier.RED)
    for a in (ignored, acked_api, acked_link):
        mesh.send(a)
    wait_for(lambda: len(mesh.smtp.about(contract)) >= 6, timeout=30, message="6 first e-mails (owner + legal)")
    mesh.send(alert("sla.breached", contract, stage="uptime", tier=Tier.RED))  # a repeat: suppressed
    # acknowledge one with a JWT, one with the signed link from its e-mail
    token = issue_token(AuthSettings(), subject="olivia", tenant="t1", scopes=["alerts:ack"])
    assert httpx.post(f"{mesh.base_url}/v1/alerts/{acked_api.alert_id}/ack").status_code == 401
    other_tenant = issue_token(AuthSettings(), subject="eve", tenant="t2", scopes=["alerts:ack"])
    assert httpx.post(f"{mesh.base_url}/v1/alerts/{acked_api.alert_id}/ack",
                      headers={"Authorization": f"Bearer {other_tenant}"}).status_code == 404
    read_only = issue_token(AuthSettings(), subject="olivia", tenant="t1", scopes=["alerts:read"])
    assert httpx.post(f"{mesh.base_url}/v1/alerts/{acked_api.alert_id}/ack",
                      headers={"Authorization": f"Bearer {read_only}"}).status_code == 403
    response = httpx.post(f"{mesh.base_url}/v1/alerts/{acked_api.alert_id}/ack",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json()["acknowledged_by"] == "olivia"
    mail = next(m for _, m in mesh.smtp.about(acked_link.alert_id))
    link = re.search(r"Acknowledge: (\S+)", body_text(mail))
    assert link is not None
    assert httpx.get(link.group(1).replace("sig=", "sig=0")[:-1]).status_code in (403, 422)  # tampered
    assert httpx.get(link.group(1)).status_code == 200
    assert not mesh.smtp.to(BACKUP)
    mesh.advance(timedelta(hours=23))
    reader = mesh.reader()
    reader.wait(lambda ms: any(n.kind is NotificationKind.ACKNOWLEDGED and n.alert_id == acked_link.alert_id
                               for n in notifications(ms)), what="ack recorded")
    assert not mesh.smtp.to(BACKUP)  # not yet: the timeline says 24h
    mesh.advance(timedelta(hours=2))
    escalated = wait_for(lambda: mesh.smtp.to(BACKUP), timeout=20, message="escalation e-mail to the backup")
    assert len(escalated) == 1
    assert ignored.alert_id in body_text(escalated[0]) and "[ESCALATED]" in str(escalated[0]["Subject"])
    assert "not acknowledged within 24h" in body_text(escalated[0])
    assert "Thread: 1 repeat(s) of this condition suppressed" in body_text(escalated[0])
    assert escalated[0]["In-Reply-To"]  # threaded under the first message
    records = reader.wait(lambda ms: [n for n in notifications(ms) if n.kind is NotificationKind.ESCALATED],
                          what="escalation recorded")
    assert {n.alert_id for n in records} == {ignored.alert_id}
    # the next step (48h: legal and procurement) for the ignored alert only
    mesh.advance(timedelta(hours=24))
    wait_for(lambda: mesh.smtp.to("procurement@example.com"), timeout=20, message="second escalation step")
    assert all(ignored.alert_id in body_text(m) for m in mesh.smtp.to("procurement@example.com"))
    assert len(mesh.smtp.to(BACKUP)) == 1
    reader.close()


def test_daily_digest_gathers_green_items_in_the_recipients_time_zone(mesh: Mesh) -> None:
    mesh.start()
    contract = unique_name("C")
    greens = [alert("obligation.completed", contract, stage=f"ob-{i}", deadline_days=None,
                    title=f"Milestone {i} completed") for i in range(3)]
    yellow = alert("obligation.due_soon", contract, stage="ob-7")
    for a in (*greens, yellow):
        mesh.send(a)
    wait_for(lambda: mesh.smtp.about(yellow.alert_id), timeout=20, message="the yellow goes out at once")
    wait_for(lambda: len(mesh.sql("SELECT 1 FROM digest_items")) == 4, timeout=20, message="4 digest items")
    # Tue 07:30 in Berlin (06:30 UTC): the 08:00 local digest is not due yet
    mesh.set_clock(T0.replace(day=3, hour=6, minute=30))
    mesh.advance(timedelta(minutes=1))
    assert not [m for m in mesh.smtp.to(OWNER) if "[DIGEST]" in str(m["Subject"])]
    mesh.set_clock(T0.replace(day=3, hour=7, minute=5))  # 08:05 in Berlin
    digest = wait_for(lambda: [m for m in mesh.smtp.to(OWNER) if "Daily summary" in str(m["Subject"])],
                      timeout=20, message="daily digest")
    assert len(digest) == 1
    text = body_text(digest[0])
    assert all(g.title in text for g in greens)
    assert "Waiting for you (yellow, not acknowledged)" in text and yellow.title in text
    assert "2026-03-03" in str(digest[0]["Subject"])
    # Next Monday 08:05 in Berlin: the weekly report has the week's items; the daily one only the open yellow.
    mesh.set_clock(T0.replace(day=9, hour=7, minute=5))
    weekly = wait_for(lambda: [m for m in mesh.smtp.to(OWNER) if "Weekly report" in str(m["Subject"])],
                      timeout=20, message="weekly report")
    assert "2026-W11" in str(weekly[0]["Subject"])
    assert all(g.title in body_text(weekly[0]) for g in greens) and yellow.title in body_text(weekly[0])
    daily = wait_for(lambda: [m for m in mesh.smtp.to(OWNER) if "Daily summary 2026-03-09" in str(m["Subject"])],
                     timeout=20, message="second daily summary")
    assert yellow.title in body_text(daily[0]) and not any(g.title in body_text(daily[0]) for g in greens)


def test_calendar_feed_has_the_deadlines_and_replaces_moved_ones(mesh: Mesh) -> None:
    mesh.start()
    contract = unique_name("C")
    owner = f"{unique_name('owner')}@example.com"
    person = Person(name="Cal Owner", email=owner, timezone="UTC")
    # dedup keys shaped as renewal-sync and obligation-engine shape them
    notice = alert("renewal.stage", contract, stage="t1:30d", owner=person, deadline_days=28,
                   title="Notice deadline")
    due = alert("obligation.due-soon", contract, stage="due-soon:inst-1:r1", owner=person, deadline_days=5,
                title="Report due")
    mesh.send(notice)
    mesh.send(due)
    url = f"{mesh.base_url}/v1/calendar/{feed_token('calendar-secret', owner)}.ics"

    def events() -> dict[str, Any]:
        response = httpx.get(url)
        if response.status_code != 200:
            return {}
        cal = icalendar.Calendar.from_ical(response.content)
        return {str(e["SUMMARY"]): e for e in cal.walk("VEVENT")}

    def when(summary: str) -> Any:
        return events().get(f"{summary} ({contract})", {}).get("DTSTART")

    wait_for(lambda: len(events()) == 2, timeout=20, message="two calendar events")
    found = events()
    assert found[f"Notice deadline ({contract})"]["DTSTART"].dt == T0 + timedelta(days=28)
    assert found[f"Report due ({contract})"]["DTSTART"].dt == T0 + timedelta(days=5)
    assert all(list(e.walk("VALARM")) for e in found.values())
    uid = str(found[f"Report due ({contract})"]["UID"])
    # the deadline moves (a new revision of the obligation): same UID, new date, no second event
    mesh.send(alert("obligation.due-soon", contract, stage="due-soon:inst-1:r2", owner=person, deadline_days=9,
                    title="Report due"))
    wait_for(lambda: (d := when("Report due")) is not None and d.dt == T0 + timedelta(days=9), timeout=20,
             message="moved deadline")
    moved = events()
    assert len(moved) == 2 and str(moved[f"Report due ({contract})"]["UID"]) == uid
    # completed: it leaves the calendar
    mesh.send(alert("obligation.completed", contract, stage="completed:inst-1", owner=person, deadline_days=None))
    wait_for(lambda: list(events()) == [f"Notice deadline ({contract})"], timeout=20, message="completed removed")
    assert httpx.get(f"{mesh.base_url}/v1/calendar/{'0' * 40}.ics").status_code == 404


def test_no_duplicate_email_after_a_crash_mid_delivery_or_a_full_redelivery(mesh: Mesh) -> None:
    mesh.start()
    contract = unique_name("C")
    a = alert("obligation.due_soon", contract, stage="ob-3")  # yellow: one e-mail, to the owner
    mesh.smtp.hold_next = True
    mesh.send(a)
    assert mesh.smtp.held.wait(30), "the e-mail never reached the SMTP server"
    rows = mesh.sql("SELECT status FROM deliveries WHERE alert_id = %s", a.alert_id)
    assert rows == [("sending",)]
    mesh.kill()  # crash while the server still holds the message: no offset commit, no 'sent'
    mesh.smtp.release.set()  # the server now refuses that half-finished transaction
    assert mesh.smtp.about(a.alert_id) == []
    mesh.start()  # same consumer group: the alert is redelivered and the delivery resumed
    wait_for(lambda: mesh.smtp.about(a.alert_id), timeout=30, message="the e-mail after the restart")
    wait_for(lambda: mesh.sql("SELECT status, attempts FROM deliveries WHERE alert_id = %s", a.alert_id)
             == [("sent", 2)], timeout=10, message="ledger says sent")
    # Replay the whole topic into a fresh consumer group: nothing is sent twice.
    marker = alert("obligation.due_soon", contract, stage="ob-4")
    mesh.send(marker)
    wait_for(lambda: mesh.smtp.about(marker.alert_id), timeout=30, message="marker e-mail")
    mesh.stop()
    mesh.group_id = mesh.group_id + "-replay"
    mesh.start()
    last = alert("obligation.due_soon", contract, stage="ob-5")
    mesh.send(last)
    wait_for(lambda: mesh.smtp.about(last.alert_id), timeout=30, message="e-mail after the replay")
    assert len(mesh.smtp.about(a.alert_id)) == 1
    assert len(mesh.smtp.about(marker.alert_id)) == 1
    mails = mesh.smtp.about(a.alert_id)
    assert mails[0][1]["Message-ID"].endswith("@notifier.contract-mesh>")


def test_permanent_channel_failure_goes_to_the_dlq_and_falls_back_for_red(mesh: Mesh) -> None:
    mesh.http.status["/slack"] = 400
    mesh.http.status["/teams"] = 404
    mesh.start()
    contract = unique_name("C")
    a = alert("renewal.decision_overdue", contract, tier=Tier.RED)
    mesh.send(a)
    posts = wait_for(lambda: mesh.http.to("/webhook"), timeout=30, message="fallback to the generic webhook")
    headers, body = posts[0]
    assert body["alert"]["alert_id"] == a.alert_id and body["tier"] == "red"
    raw = next(b for p, _, b in mesh.http.posts if p == "/webhook")
    signature = {k.lower(): v for k, v in headers.items()}["x-mesh-signature"]
    verify("webhook-secret", raw, signature)  # raises when the signature is wrong
    dlq = mesh.reader(mesh.alerts_topic + ".dlq")
    letters = dlq.wait(lambda ms: [read_dead_letter(m.headers()) for m in ms], what="dead letters")
    reasons = " | ".join(d.reason for d in letters)
    assert "slack" in reasons and "HTTP 400" in reasons and "teams" in reasons
    reader = mesh.reader()
    failed = reader.wait(lambda ms: [n for n in notifications(ms) if n.kind is NotificationKind.FAILED],
                         what="failures recorded")
    assert {n.channel for n in failed} == {"slack", "teams"}
    assert len(mesh.smtp.to(OWNER)) == 1  # e-mail itself worked
    # Slack is fixed; replaying the dead letters delivers there, and nothing else twice.
    mesh.http.status["/slack"] = 200
    assert replay(KafkaSettings(bootstrap_servers=mesh.bootstrap), mesh.alerts_topic, idle_timeout=2) == 2
    wait_for(lambda: mesh.http.to("/slack"), timeout=30, message="slack delivery after the replay")
    assert len(mesh.http.to("/webhook")) == 1
    assert len(mesh.smtp.to(OWNER)) == 1
    dlq.close()
    reader.close()


def test_invalid_alerts_go_to_the_dlq_and_the_service_keeps_going(mesh: Mesh) -> None:
    mesh.start()
    contract = unique_name("C")
    good = alert("obligation.due_soon", contract)
    bad = encode(good, source="test")
    mesh.produce_raw(bad.key, b"{not json", bad.headers)
    mesh.produce_raw(bad.key, bad.value.replace(b'"tier":"yellow"', b'"tier":"purple"'), bad.headers)
    misplaced = encode(RenewalDecision(contract_id=contract, tenant_id="t1", decision=RenewalDecisionKind.RENEW,
                                       decided_at=datetime.now(UTC)), source="test")
    mesh.produce_raw(misplaced.key, misplaced.value, misplaced.headers)  # a decision on the alerts topic
    mesh.send(good)
    wait_for(lambda: mesh.smtp.about(good.alert_id), timeout=30, message="the valid alert still delivered")
    dlq = mesh.reader(mesh.alerts_topic + ".dlq")
    letters = dlq.wait(lambda ms: len(ms) >= 3 and {m.value(): read_dead_letter(m.headers()).reason for m in ms},
                       what="3 letters")
    assert "not JSON" in letters[b"{not json"]
    assert "Alert.tier" in letters[bad.value.replace(b'"tier":"yellow"', b'"tier":"purple"')]
    assert "contractmesh.RenewalDecision does not belong on clm.alert.v1" in letters[misplaced.value]
    dlq.close()


def test_a_rules_file_with_an_error_is_rejected_naming_the_line(tmp_path: Path) -> None:
    text = DEFAULT_RULES.read_text().replace("tier: yellow\n    recipients: [owner, sales]",
                                             "tier: amber\n    recipients: [owner, sales]")
    bad = tmp_path / "rules.yaml"
    bad.write_text(text)
    line = text[: text.index("tier: amber")].count("\n") + 1
    result = subprocess.run(notifier_argv(), env={"PATH": "/usr/bin:/bin", "NOTIFIER_RULES_FILE": str(bad)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{bad}:{line}: rules.6.tier" in result.stderr, result.stderr


def test_a_record_the_broker_never_confirmed_is_produced_again_with_the_same_id(mesh: Mesh) -> None:
    mesh.start()
    a = alert("obligation.due_soon", unique_name("C"))
    mesh.send(a)
    reader = mesh.reader()
    reader.wait(lambda ms: [n for n in notifications(ms) if n.alert_id == a.alert_id], what="first record")
    wait_for(lambda: mesh.sql("SELECT recorded FROM deliveries WHERE alert_id = %s", a.alert_id) == [(True,)],
             timeout=10, message="recorded")
    # As if the process had died before the broker acknowledged the record.
    mesh.sql("UPDATE deliveries SET recorded = false, updated_at = now() - interval '5 minutes' "
             "WHERE alert_id = %s RETURNING 1", a.alert_id)
    mesh.advance(timedelta(minutes=1))  # a tick
    ids = reader.wait(lambda ms: len(r := [m for m in ms if notifications([m])[0].alert_id == a.alert_id]) == 2
                      and [dict(m.headers() or [])["ce_id"] for m in r], what="record produced again")
    assert ids[0] == ids[1]  # a duplicate by event id, which consumers drop
    wait_for(lambda: mesh.sql("SELECT recorded FROM deliveries WHERE alert_id = %s", a.alert_id) == [(True,)],
             timeout=10, message="recorded again")
    assert len(mesh.smtp.about(a.alert_id)) == 1
    reader.close()


def test_two_replicas_share_the_partitions_and_a_crashed_one_loses_and_repeats_nothing(mesh: Mesh) -> None:
    mesh.start(0)
    mesh.start(1)
    admin = AdminClient({"bootstrap.servers": mesh.bootstrap})

    def assignment() -> list[int]:
        group = admin.describe_consumer_groups([mesh.group_id])[mesh.group_id].result(timeout=10)
        # the alert topic's 4 partitions (the decisions topic's one partition goes to either replica)
        return sorted(len([tp for tp in m.assignment.topic_partitions if tp.topic == mesh.alerts_topic])
                      for m in group.members)

    wait_for(lambda: assignment() == [2, 2], timeout=60, interval=0.5, message="4 partitions shared by 2 replicas")
    contracts = [unique_name("C") for _ in range(12)]
    first = [alert("obligation.due_soon", c, stage="a") for c in contracts]
    for a in first:
        mesh.send(a)
    wait_for(lambda: all(mesh.smtp.about(a.alert_id) for a in first), timeout=30, message="first wave e-mailed")
    mesh.kill(1)  # its partitions move to replica 0 once its session times out
    second = [alert("obligation.due_soon", c, stage="b") for c in contracts]
    for a in second:
        mesh.send(a)
    wait_for(lambda: all(mesh.smtp.about(a.alert_id) for a in second), timeout=60, message="second wave e-mailed")
    assert all(len(mesh.smtp.about(a.alert_id)) == 1 for a in first + second)
    assert len(mesh.smtp.to(OWNER)) == 24
    assert assignment() == [4]  # the survivor holds every partition


def test_a_renewal_decision_from_the_crm_stops_the_escalation(mesh: Mesh) -> None:
    mesh.start()
    decided, undecided = unique_name("C"), unique_name("C")
    answered = alert("renewal.decision_overdue", decided, stage="30d", tier=Tier.RED)
    left = alert("renewal.decision_overdue", undecided, stage="30d", tier=Tier.RED)
    mesh.send(answered)
    mesh.send(left)
    wait_for(lambda: mesh.smtp.about(decided) and mesh.smtp.about(undecided), timeout=30, message="first e-mails")
    mesh.decide(RenewalDecision(contract_id=decided, tenant_id="t1", decision=RenewalDecisionKind.RENEW,
                                decided_by="cara@crm", decided_at=T0))
    reader = mesh.reader()
    acks = reader.wait(lambda ms: [n for n in notifications(ms)
                                   if n.kind is NotificationKind.ACKNOWLEDGED and n.alert_id == answered.alert_id],
                       what="the decision acknowledged the open renewal alert")
    assert acks[0].recipient == "crm-decision:renew"
    mesh.advance(timedelta(hours=25))
    escalated = wait_for(lambda: mesh.smtp.to(BACKUP), timeout=20, message="escalation of the undecided contract")
    assert all(left.alert_id in body_text(m) and answered.alert_id not in body_text(m) for m in escalated)
    escalations = reader.wait(lambda ms: [n for n in notifications(ms) if n.kind is NotificationKind.ESCALATED],
                              what="escalation recorded")
    assert {n.alert_id for n in escalations} == {left.alert_id}
    reader.close()
