"""How the notifier waits out a channel outage (docs/adr/0010-ride-out-outages.md).

A send that fails for now (SMTP 4xx, a refused connection, a timeout, an open circuit) is not a
failed notification: its ledger row is rescheduled in PostgreSQL with the backoff renewal-sync uses for
the CRM (mesh_common.delivery.round_delay), or for the circuit's trial call, and the ticker sends it
when it is due. Only a permanent answer, or `give_up_seconds` of failing, records it failed and
dead-letters the alert. The message itself is kept in the ledger row, so a retry after a restart sends
the same text with the same Message-ID."""

from __future__ import annotations

import random
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from mesh_common.delivery import CircuitBreaker, CircuitOpen, DeliveryError, breaker_wait, round_delay

from .adapters.channels import Channel, Outgoing

SENT, DELAYED, HELD, FAILED = "sent", "delayed", "held", "failed"  # what one delivery attempt came to


@dataclass(frozen=True)
class OutagePolicy:
    give_up_seconds: float = 24 * 3600.0
    round_delay: float = 30.0
    max_round_delay: float = 300.0
    lease_seconds: float = 300.0  # a claim on a delivery; must outlast one send with its in-send retries
    owner: str = ""  # "instance|run" of this process (see Store.ledger_begin); "" when there is no instance id


def lease_owner(instance_id: str | None) -> str:
    return f"{instance_id}|{uuid.uuid4().hex}" if instance_id else f"|{uuid.uuid4().hex}"


def next_try_in(policy: OutagePolicy, channel: Channel, exc: DeliveryError, attempts: int) -> float:
    """Seconds before the next try: at the circuit's trial call (spread out) when no call was made,
    else the durable backoff, never sooner than a Retry-After."""
    breaker = getattr(channel, "breaker", None)
    if isinstance(exc, CircuitOpen) and isinstance(breaker, CircuitBreaker):
        return breaker_wait(breaker) + random.uniform(0, breaker.reset_after / 5)
    return round_delay(max(0, attempts - 1), base=policy.round_delay, cap=policy.max_round_delay,
                       retry_after=exc.retry_after)


def dump_body(body: Outgoing) -> dict[str, Any]:
    return asdict(body)


def load_body(data: dict[str, Any]) -> Outgoing:
    return Outgoing(**data)
