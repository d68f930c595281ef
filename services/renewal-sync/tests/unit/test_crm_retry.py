"""The durable CRM retry schedule (pure)."""

from __future__ import annotations

import random

from renewal_sync.adapters.relay import round_delay


def test_round_delay_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempts, step in [(0, 30.0), (1, 60.0), (2, 120.0), (3, 240.0), (4, 300.0), (40, 300.0)]:
        delays = [round_delay(attempts, base=30, cap=300, rng=rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step / 4  # spread out, not in lockstep


def test_round_delay_is_never_shorter_than_the_crms_retry_after() -> None:
    assert round_delay(0, base=30, cap=300, retry_after=900.0) == 900.0
    assert 15 <= round_delay(0, base=30, cap=300, retry_after=1.0) <= 30
