"""ERP milestone billing releases (docs/adr/0012): held in the contract's state until ERP accepts them,
given up (dead-lettered, red alert) when ERP refuses them or keeps failing past the give-up time."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from contract_schema import ReleaseMilestoneBilling

from .effects import DeadLetter, Effect
from .messages import erp_failure_alert
from .model import ContractState, Parked, PendingRelease


def hold_release(state: ContractState, command_id: str, command: ReleaseMilestoneBilling,
                 trigger: Parked | None) -> ContractState:
    """Keep a release until ERP has accepted it; the same command id is held once."""
    if any(r.command_id == command_id for r in state.releases):
        return state
    new = state.copy()
    new.releases = new.releases + (PendingRelease(command_id, command.model_dump_json(), trigger),)
    return new


def release_outcome(state: ContractState, command_id: str, *, ok: bool, permanent: bool, error: str | None,
                    at: datetime, give_up: timedelta, now: datetime,
                    counted: bool = True) -> tuple[ContractState, list[Effect]]:
    """What one delivery round of a held release did. `at` is the wall time of the round (outages are
    measured in real time, whatever the topic clock says); `now` the engine's clock, for the alert.

    Accepted: forgotten. Failed for now: counted, and the first failure starts the give-up clock. Failed
    permanently (a 4xx other than 429), or still failing `give_up` after the first failed round: the
    trigger is dead-lettered with the reason and a red alert is raised. `counted=False` (an open circuit:
    no call was made) costs no round and keeps the last real error, but the give-up time is checked. An
    outcome for a release no longer held (already accepted, given up) changes nothing."""
    held = next((r for r in state.releases if r.command_id == command_id), None)
    if held is None:
        return state, []
    new = state.copy()
    others = tuple(r for r in new.releases if r.command_id != command_id)
    if ok:
        new.releases = others
        return new, []
    since = held.failing_since or at
    rounds = held.attempts + (1 if counted else 0)
    error = error or held.last_error
    if not permanent and at - since < give_up:
        new.releases = tuple(r if r.command_id != command_id else
                             replace(r, attempts=rounds, failing_since=since, last_error=error)
                             for r in new.releases)
        return new, []
    new.releases = others
    command = ReleaseMilestoneBilling.model_validate_json(held.command)
    why = "ERP refused it" if permanent else (
        f"gave up after {rounds} failed round(s) over {_hours(at - since)}")
    reason = f"ERP release of milestone {command.obligation_id!r} failed for good ({why}): {error}"
    effects: list[Effect] = [erp_failure_alert(new, command, reason, now)]
    if held.trigger is not None:
        effects.append(DeadLetter(held.trigger, reason))
    return new, effects


def _hours(d: timedelta) -> str:
    seconds = d.total_seconds()
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"
