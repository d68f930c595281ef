"""The handler table answers "what happens on event X" for the engine's input topics."""

from obligation_engine.bootstrap import INPUTS
from obligation_engine.service import HANDLERS, ObligationService

from contract_schema import (
    ContractSnapshot,
    ContractTerminated,
    DeliverableAccepted,
    MilestoneCompleted,
    SlaMeasurement,
)


def test_every_handled_type_is_carried_by_an_input_topic() -> None:
    carried = {event for spec in INPUTS for event in spec.events}
    assert set(HANDLERS) <= carried


def test_the_table() -> None:
    assert HANDLERS == {
        ContractSnapshot: ObligationService.on_snapshot,
        ContractTerminated: ObligationService.on_termination,
        MilestoneCompleted: ObligationService.on_performance,
        DeliverableAccepted: ObligationService.on_performance,
        SlaMeasurement: ObligationService.on_performance,
    }
