from __future__ import annotations

from datetime import timedelta

import pytest
from notifier.domain.rules import RulesError, decide, parse_duration, parse_rules, resolve
from notifier.settings import DEFAULT_RULES

from contract_schema.alert import Tier

from .helpers import T0, make_alert

TEXT = DEFAULT_RULES.read_text()
RULES = parse_rules(TEXT, "default.yaml")


@pytest.mark.parametrize(("alert_type", "stage", "tier"), [
    ("renewal.decision_overdue", "s", Tier.RED),
    ("sla.breached", "s", Tier.RED),
    ("obligation.sla-breached", "sla-breached:i1", Tier.RED),
    ("invoice.rejected", "INV-1", Tier.RED),
    ("invoice.overbilled", "INV-1", Tier.RED),
    ("obligation.overdue", "overdue:i1:r1", Tier.RED),
    ("obligation.escalated", "escalated:i1:r1", Tier.RED),
    ("obligation.due_soon", "s", Tier.YELLOW),
    ("obligation.due-soon", "due-soon:i1:r1", Tier.YELLOW),
    ("crm.sync_failing", "s", Tier.RED),
    ("renewal.crm_sync_failing", "s", Tier.RED),
    ("erp.sync_failing", "s", Tier.RED),
    ("obligation.completed", "completed:i1", Tier.GREEN),
])
def test_shipped_rules_tier_every_known_alert_type(alert_type: str, stage: str, tier: Tier) -> None:
    alert = make_alert(alert_type, tier=Tier.GREEN if tier is not Tier.GREEN else Tier.RED, stage=stage)
    assert decide(RULES, alert, T0).tier is tier


@pytest.mark.parametrize(("stage", "sender_tier", "tier"), [
    ("t1:30d", Tier.YELLOW, Tier.RED),  # under 30 days, no decision: red
    ("t1:notice-deadline", Tier.RED, Tier.RED),
    ("t1:60d", Tier.YELLOW, Tier.YELLOW),  # renewal decision due in 60-90 days: yellow
    ("t1:90d", Tier.YELLOW, Tier.YELLOW),
    ("t1:120d", Tier.YELLOW, Tier.GREEN),  # early notice: digest
    ("t1:30d", Tier.GREEN, Tier.GREEN),  # a decision is recorded: information only
])
def test_renewal_stages_by_the_shipped_rules(stage: str, sender_tier: Tier, tier: Tier) -> None:
    assert decide(RULES, make_alert("renewal.stage", tier=sender_tier, stage=stage), T0).tier is tier


def test_unknown_type_takes_the_alerts_own_tier_and_a_safe_default() -> None:
    decision = decide(RULES, make_alert("weird.thing", tier=Tier.RED), T0)
    assert decision.tier is Tier.RED
    assert decision.rule == "unknown-type"
    assert decision.recipients == ("owner", "backup")


def test_red_rules_escalate_24_48_72h_and_green_never() -> None:
    red = decide(RULES, make_alert("sla.breached"), T0)
    assert [s.after for s in red.escalation] == [timedelta(hours=24), timedelta(hours=48), timedelta(hours=72)]
    assert red.escalation[0].to == ("backup",)
    assert red.fallback_channels == ("teams", "webhook")
    green = decide(RULES, make_alert("obligation.completed"), T0)
    assert green.escalation == () and not green.immediate


def test_required_action_from_alert_else_from_rule() -> None:
    assert decide(RULES, make_alert("sla.breached", required_action="Do X"), T0).required_action == "Do X"
    assert "service credit" in decide(RULES, make_alert("sla.breached"), T0).required_action


def test_recipients_by_role_owner_from_alert_and_per_contract_override() -> None:
    text = TEXT.replace("contracts: {}", "contracts:\n    C-9: {legal: [counsel-c9@example.com]}")
    rules = parse_rules(text)
    people = resolve(rules, make_alert(contract_id="C-9"), ("owner", "legal", "backup"))
    assert [(p.role, p.address, p.timezone) for p in people] == [
        ("owner", "olivia@example.com", "Europe/Berlin"), ("legal", "counsel-c9@example.com", "UTC"),
        ("backup", "bob@example.com", "UTC")]
    assert [p.address for p in resolve(rules, make_alert(contract_id="C-1"), ("legal",))] == ["legal@example.com"]


def test_deadline_conditions_in_match() -> None:
    text = TEXT.replace("  - name: renewal-decision-overdue", """  - name: soon
    match: {alert_type: custom.x, deadline_within: 2d}
    tier: red
  - name: later
    match: {alert_type: custom.x, deadline_beyond: 2d}
    tier: green
    channels: [digest]
  - name: renewal-decision-overdue""")
    rules = parse_rules(text)
    assert decide(rules, make_alert("custom.x", deadline=T0 + timedelta(days=1)), T0).tier is Tier.RED
    assert decide(rules, make_alert("custom.x", deadline=T0 + timedelta(days=5)), T0).tier is Tier.GREEN


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@pytest.mark.parametrize(("old", "new", "needle", "problem"), [
    ("tier: yellow\n    recipients: [owner, sales]", "tier: orange\n    recipients: [owner, sales]",
     "tier: orange", "rules.6.tier"),
    ("{after: 48h, to: [finance]}", "{after: 2 days, to: [finance]}", "{after: 2 days", "is not a duration"),
    ("channels: [email, slack]\n    fallback_channels: [teams, webhook]\n"
     "    escalation:\n      - {after: 24h, to: [backup]}\n    dedup_window: 6h",
     "channels: [email, pager]\n    fallback_channels: [teams, webhook]\n"
     "    escalation:\n      - {after: 24h, to: [backup]}\n    dedup_window: 6h",
     "pager", "unknown channel 'pager'"),
    ("    legal: [legal@example.com]", "    lawyers: [legal@example.com]", "lawyers", "recipients.roles.lawyers"),
    ("default_timezone: UTC", "default_timezone: Mars/Olympus", "Mars/Olympus", "unknown time zone"),
    ("version: 1", "version: 7", "version: 7", "unsupported rules version 7"),
    ("    recipients: [owner, legal]\n    channels: [email, slack]\n    fallback_channels: [teams, webhook]\n"
     "    escalation:\n      - {after: 24h",
     "    recipients: [owner, legal]\n    channels: [email, slack]\n    fallback_channels: [teams, webhook]\n"
     "    escalation:\n      - {after: 96h", "{after: 48h, to: [legal, procurement]}", "increasing 'after' order"),
])
def test_errors_name_the_line(old: str, new: str, needle: str, problem: str) -> None:
    assert old in TEXT
    bad = TEXT.replace(old, new, 1)
    with pytest.raises(RulesError) as info:
        parse_rules(bad, "rules.yaml")
    assert problem in str(info.value)
    assert info.value.line == _line_of(bad, needle), str(info.value)
    assert str(info.value).startswith(f"rules.yaml:{info.value.line}: ")


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules("version: 1\nchannels:\n  email: {kind: email\nrules: []\n", "x.yaml")
    assert info.value.line in (3, 4)
    assert "YAML syntax" in str(info.value)


def test_duplicate_key_is_an_error_with_its_line() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(TEXT.replace("dedup_window: 24h", "dedup_window: 24h\ndedup_window: 12h", 1), "x.yaml")
    assert "duplicate key 'dedup_window'" in str(info.value)
    assert info.value.line == _line_of(TEXT, "dedup_window: 24h") + 1


def test_durations() -> None:
    assert parse_duration("immediate") == timedelta(0)
    assert parse_duration("72h") == timedelta(hours=72)
    assert parse_duration("2w") == timedelta(weeks=2)
    with pytest.raises(ValueError):
        parse_duration("soon")
