"""Notification rules as configuration: a versioned YAML file, validated on load.

The file maps alert types to a tier, recipients by role, channels and an escalation
timeline. Parsing keeps the line of every YAML node so an error names the line it is on.
Nothing here does I/O: the shell reads the file and hands over its text.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contract_schema.alert import Alert, Tier

ROLES = ("owner", "backup", "legal", "ap", "procurement", "sales", "finance")
Role = Literal["owner", "backup", "legal", "ap", "procurement", "sales", "finance"]
ChannelKind = Literal["email", "slack", "teams", "webhook"]
SUPPORTED_VERSIONS = (1,)

_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """'immediate' | '<n>m' | '<n>h' | '<n>d' | '<n>w'."""
    text = str(text).strip().lower()
    if text in ("immediate", "0", "0h"):
        return timedelta(0)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (use immediate, 30m, 24h, 7d or 2w)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


Duration = Annotated[timedelta, Field(description="immediate, 30m, 24h, 7d, 2w")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration_field(value: Any) -> Any:
    return parse_duration(str(value)) if isinstance(value, str | int) else value


class ChannelConfig(_Strict):
    kind: ChannelKind
    # Chat and webhook channels post to one URL; url_env names the variable holding it, so
    # secrets stay out of the rules file. A channel with neither is configured but disabled.
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None  # generic webhook: HMAC secret


class EscalationStep(_Strict):
    after: Duration
    to: tuple[Role, ...] = Field(min_length=1)

    _after = field_validator("after", mode="before")(_duration_field)


class Match(_Strict):
    alert_type: str | tuple[str, ...] = Field(description="exact type or a glob such as 'obligation.*', or a list")
    stage: tuple[str, ...] | None = None  # last part of the dedup key, e.g. 30d
    alert_tier: tuple[Tier, ...] | None = None  # the tier the sender gave, e.g. green once a decision is recorded
    deadline_within: Duration | None = None  # deadline - now <= this
    deadline_beyond: Duration | None = None  # deadline - now > this

    _within = field_validator("deadline_within", "deadline_beyond", mode="before")(_duration_field)


class Rule(_Strict):
    name: str
    match: Match
    tier: Tier | Literal["from_alert"] = "from_alert"
    recipients: tuple[Role, ...] = ("owner",)
    channels: tuple[str, ...] = ("email",)
    fallback_channels: tuple[str, ...] = ()  # red only: tried in order when a channel fails permanently
    escalation: tuple[EscalationStep, ...] = ()
    dedup_window: Duration | None = None
    required_action: str | None = None  # used when the alert carries none

    _window = field_validator("dedup_window", mode="before")(_duration_field)


class DigestSchedule(_Strict):
    daily_at: str = "08:00"
    weekly_day: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = "monday"
    weekly_at: str = "08:00"
    channel: str = "email"

    @field_validator("daily_at", "weekly_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
            raise ValueError(f"{value!r} is not a HH:MM time")
        return value


class Recipients(_Strict):
    roles: dict[Role, tuple[str, ...]] = Field(default_factory=dict)
    contracts: dict[str, dict[Role, tuple[str, ...]]] = Field(default_factory=dict)
    timezones: dict[str, str] = Field(default_factory=dict)  # address -> IANA zone

    @field_validator("timezones")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        for address, zone in value.items():
            _zone(zone, f"time zone of {address}")
        return value


class RulesConfig(_Strict):
    version: int
    default_timezone: str = "UTC"
    dedup_window: Duration = timedelta(hours=24)
    digest: DigestSchedule = DigestSchedule()
    channels: dict[str, ChannelConfig]
    recipients: Recipients = Recipients()
    rules: tuple[Rule, ...] = Field(min_length=1)
    default_rule: Rule | None = None  # for alert types no rule matches; tier comes from the alert

    _window = field_validator("dedup_window", mode="before")(_duration_field)

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported rules version {value}; this notifier reads {SUPPORTED_VERSIONS}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        _zone(value, "default_timezone")
        return value


def _zone(name: str, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{what}: unknown time zone {name!r}") from exc


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, the line and the problem."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source, self.line, self.problem = source, line, problem
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}")


# --- YAML with line numbers --------------------------------------------------------------

Path = tuple[str | int, ...]


def _to_python(node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if not isinstance(key_node, yaml.ScalarNode) \
                else key_node.value
            if key in out:
                raise RulesError("", key_node.start_mark.line + 1, f"duplicate key {key!r}")
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _to_python(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines) for i, item in enumerate(node.value)]
    # Scalars resolved with the safe loader's tag rules (ints, bools, strings).
    return yaml.safe_load(yaml.serialize(node))


def _line_for(loc: tuple[Any, ...], lines: Mapping[Path, int]) -> int | None:
    path: Path = tuple(p for p in loc if isinstance(p, str | int))
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def parse_rules(text: str, source: str = "<rules>") -> RulesConfig:
    """Parse and validate a rules file; raises RulesError naming the line of the first problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RulesError(source, mark.line + 1 if mark else None, f"YAML syntax: {exc.problem}") from exc
    if node is None:
        raise RulesError(source, 1, "the rules file is empty")
    lines: dict[Path, int] = {}
    try:
        data = _to_python(node, (), lines)
    except RulesError as exc:
        raise RulesError(source, exc.line, exc.problem) from exc
    if not isinstance(data, dict):
        raise RulesError(source, lines.get(()), "the rules file must be a mapping at the top level")
    try:
        config = RulesConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Drop pydantic's union/validator tags (e.g. "str-enum[Tier]") so the path is the file's.
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        field = ".".join(str(p) for p in loc) or "(top level)"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise RulesError(source, _line_for(loc, lines), f"{field}: {msg}{more}") from exc
    _check_references(config, lines, source)
    return config


def _check_references(config: RulesConfig, lines: Mapping[Path, int], source: str) -> None:
    """Cross-field checks: escalation steps in order; channels named must be defined under `channels`."""
    for i, rule in enumerate(config.rules):
        for j in range(1, len(rule.escalation)):
            if rule.escalation[j].after <= rule.escalation[j - 1].after:
                raise RulesError(source, _line_for(("rules", i, "escalation", j), lines),
                                 f"rules.{i}.escalation.{j}: escalation steps must be in increasing 'after' order")
    known = set(config.channels) | {"digest"}
    named: list[tuple[Path, str]] = []
    for i, rule in enumerate(config.rules):
        named += [(("rules", i, "channels", j), c) for j, c in enumerate(rule.channels)]
        named += [(("rules", i, "fallback_channels", j), c) for j, c in enumerate(rule.fallback_channels)]
    if config.default_rule:
        named += [(("default_rule", "channels", j), c) for j, c in enumerate(config.default_rule.channels)]
        named += [(("default_rule", "fallback_channels", j), c)
                  for j, c in enumerate(config.default_rule.fallback_channels)]
    named.append((("digest", "channel"), config.digest.channel))
    for path, name in named:
        if name not in known or (path[0] == "digest" and name == "digest"):
            field = ".".join(str(p) for p in path)
            raise RulesError(source, _line_for(path, lines),
                             f"{field}: unknown channel {name!r}; defined channels: {sorted(config.channels)}")


# --- Applying the rules ---------------------------------------------------------------------


def condition_of(alert: Alert) -> tuple[str, ...]:
    """The parts of the dedup key after 'type:contract:' (the whole key split, if it is not shaped so)."""
    prefix = f"{alert.alert_type}:{alert.contract_id}:"
    rest = alert.dedup_key[len(prefix):] if alert.dedup_key.startswith(prefix) else alert.dedup_key
    return tuple(p for p in rest.split(":") if p)


def stage_of(alert: Alert) -> str | None:
    """The stage: the last part of the dedup key ('renewal.stage:C-1:t2:30d' -> '30d')."""
    parts = condition_of(alert)
    return parts[-1] if parts else None


def matches(match: Match, alert: Alert, now: datetime) -> bool:
    patterns = (match.alert_type,) if isinstance(match.alert_type, str) else match.alert_type
    if not any(fnmatch.fnmatchcase(alert.alert_type, p) for p in patterns):
        return False
    if match.stage is not None and stage_of(alert) not in match.stage:
        return False
    if match.alert_tier is not None and alert.tier not in match.alert_tier:
        return False
    if match.deadline_within is not None or match.deadline_beyond is not None:
        if alert.deadline is None:
            return False
        left = alert.deadline - now
        if match.deadline_within is not None and left > match.deadline_within:
            return False
        if match.deadline_beyond is not None and left <= match.deadline_beyond:
            return False
    return True


@dataclass(frozen=True)
class Decision:
    """What the rules say to do with one alert."""

    rule: str
    tier: Tier
    recipients: tuple[Role, ...]
    channels: tuple[str, ...]
    fallback_channels: tuple[str, ...]
    escalation: tuple[EscalationStep, ...]
    dedup_window: timedelta
    required_action: str

    @property
    def immediate(self) -> bool:
        """Red and yellow go out now; green only into digests (or when a rule says 'digest' only)."""
        return self.tier is not Tier.GREEN and any(c != "digest" for c in self.channels)


_SAFE_DEFAULT = Rule(name="safe-default", match=Match(alert_type="*"), tier="from_alert",
                     recipients=("owner", "backup"), channels=("email",))


def decide(config: RulesConfig, alert: Alert, now: datetime) -> Decision:
    """First matching rule wins; an unknown type gets the default rule and the alert's own tier."""
    rule = next((r for r in config.rules if matches(r.match, alert, now)), None)
    if rule is None:
        rule = config.default_rule or _SAFE_DEFAULT
    tier = alert.tier if rule.tier == "from_alert" else Tier(rule.tier)
    return Decision(
        rule=rule.name, tier=tier, recipients=rule.recipients, channels=rule.channels,
        fallback_channels=rule.fallback_channels if tier is Tier.RED else (),
        escalation=rule.escalation if tier is not Tier.GREEN else (),
        dedup_window=rule.dedup_window or config.dedup_window,
        required_action=alert.required_action or rule.required_action or "")


@dataclass(frozen=True)
class Recipient:
    role: str
    address: str
    name: str
    timezone: str


def resolve(config: RulesConfig, alert: Alert, roles: tuple[str, ...]) -> tuple[Recipient, ...]:
    """Addresses for roles: owner/backup from the alert, others per contract, else per role.

    Deduplicated by address, keeping the first role that named it.
    """
    out: dict[str, Recipient] = {}
    tz_default = config.default_timezone
    for role in roles:
        people: list[tuple[str, str, str]] = []
        per_contract = config.recipients.contracts.get(alert.contract_id, {})
        if role == "owner" and alert.owner is not None:
            people.append((alert.owner.email, alert.owner.name, alert.owner.timezone))
        elif role == "backup" and alert.backup_owner is not None:
            people.append((alert.backup_owner.email, alert.backup_owner.name, alert.backup_owner.timezone))
        addresses = per_contract.get(role) or config.recipients.roles.get(role) or ()  # type: ignore[call-overload]
        if not people:
            people.extend((a, role, config.recipients.timezones.get(a, tz_default)) for a in addresses)
        for address, name, zone in people:
            zone = config.recipients.timezones.get(address, zone)
            out.setdefault(address.lower(), Recipient(role, address, name, zone))
    return tuple(out.values())
