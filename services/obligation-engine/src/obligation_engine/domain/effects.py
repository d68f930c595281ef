"""What the decider asks the shell to do (the effects), and the two ways an input is refused.

Every effect carries a stable event id derived from the contract, the instance, its revision
and what happened, so a replay after a crash produces the same ids and downstream consumers
(and this engine) drop the duplicate. Effects are performed *before* the state is saved.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract_schema import ReleaseMilestoneBilling

from .messages import Publish as Publish  # an effect, like the others below
from .model import Parked


@dataclass(frozen=True)
class CallErp:
    """Tell ERP over REST to release milestone billing (the same command is also published). The shell
    keeps it in the state as a PendingRelease (`hold_release`) and sends it outside the agent."""

    command: ReleaseMilestoneBilling
    event_id: str


@dataclass(frozen=True)
class DeadLetter:
    parked: Parked
    reason: str


@dataclass(frozen=True)
class ScorecardChanged:
    """The contract's figures moved: the shell recomputes and publishes its scorecards."""


Effect = Publish | CallErp | DeadLetter | ScorecardChanged


class Park(Exception):
    """The input names a contract or obligation this engine does not know (yet)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reject(Exception):
    """The input can never be applied: dead-letter it now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

