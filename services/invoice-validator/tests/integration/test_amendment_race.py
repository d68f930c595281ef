"""An invoice sent after its contract's amendment is on the state topic is priced by that amendment, also
when the contract-state agent is behind (a backlog of snapshots on the partition, a replica SIGKILLed right
after the invoice was sent and the state replayed from the committed offset): docs/adr/0011."""

from __future__ import annotations

import os
import signal
from datetime import date, timedelta
from pathlib import Path

import pytest
from invoice_validator import samples as s

from contract_schema import ContractSnapshot, InvoiceValidated, VerdictStatus, encode
from contract_schema.topics import CONTRACT_STATE
from mesh_common.faust_kafka import partition_for
from mesh_testing import unique_name

from .conftest import CLOCK_START
from .harness import PARTITIONS, SOURCE, Running, start, stop

ROUNDS = 8
BACKLOG = 150  # snapshots of another contract on the same partition, just before the amendment
KILL_EVERY = 3  # with one replica: kill the worker after the invoice of every third round

TWO_REPLICAS = pytest.param(2, marks=pytest.mark.skipif(
    not os.environ.get("MESH_LONG_TESTS"), reason="two-replica kill run: set MESH_LONG_TESTS=1"))


def _same_partition(contract_id: str) -> str:
    """A contract id whose records land on the same partition as `contract_id`'s."""
    target = partition_for(contract_id.encode(), PARTITIONS)
    while True:
        other = unique_name("C-backlog")
        if partition_for(other.encode(), PARTITIONS) == target:
            return other


def _amended(base: ContractSnapshot) -> ContractSnapshot:
    """Version 2 raises the hourly rate from 100 to 130 from February on."""
    v2 = s.terms(version=2, effective_from=date(2026, 2, 1), rate_card=(s.rate_line(unit_price="130.00"),))
    return base.model_copy(update={"versions": (*base.versions, v2), "updated_at": base.updated_at + timedelta(1)})


@pytest.mark.parametrize("replicas", [1, TWO_REPLICAS])
def test_an_invoice_sent_after_an_amendment_is_priced_by_it_even_when_the_state_agent_is_behind(
        kafka_bootstrap: str, tmp_path: Path, replicas: int) -> None:
    def env(replica: int) -> dict[str, str]:
        return {"VALIDATOR_STORE": "rocksdb://", "VALIDATOR_DATA_DIR": str(tmp_path / f"faust-data-{replica}"),
                "VALIDATOR_SESSION_TIMEOUT_SECONDS": "6", "VALIDATOR_PRODUCER_LINGER_SECONDS": "0.3"}

    workers: list[Running] = [start(kafka_bootstrap, tmp_path, extra_env=env(0))]
    prefix = workers[0].prefix
    try:
        for replica in range(1, replicas):
            workers.append(start(kafka_bootstrap, tmp_path, prefix=prefix, create=False, extra_env=env(replica)))
        feed = workers[0]
        feed.tick(CLOCK_START)
        sent: list[tuple[int, str]] = []
        for n in range(ROUNDS):
            vendor = unique_name("V")
            base = s.contract(unique_name("C"), vendor=vendor)
            backlog = s.contract(_same_partition(base.contract_id), vendor=unique_name("V"))
            feed.produce(base)
            for k in range(BACKLOG):  # the state agent has these to get through before the amendment
                snapshot = backlog.model_copy(update={"updated_at": backlog.updated_at + timedelta(seconds=k)})
                record = encode(snapshot, source=SOURCE, event_id=unique_name("ce"))
                feed.producer.produce(feed.topic(CONTRACT_STATE.name), key=record.key, value=record.value,
                                      headers=record.headers)
            feed.produce(_amended(base))  # flushed: version 2 is on the state topic from here on
            invoice = s.invoice(unique_name("INV"), contract_ref=base.contract_id, vendor=vendor,
                                number=unique_name("N"), lines=(s.line(unit_price="130.00"),))
            feed.produce(invoice)
            sent.append((n, invoice.invoice_id))
            if replicas > 1 or n % KILL_EVERY == KILL_EVERY - 1:
                # Killed right after the invoice was sent: the state is replayed from the committed offset
                # (or taken over by the other replica) while the invoice is redelivered.
                victim = n % replicas
                os.kill(workers[victim].process.pid, signal.SIGKILL)
                workers[victim].process.wait(10)
                stop(workers[victim])
                workers[victim] = start(kafka_bootstrap, tmp_path, prefix=prefix, create=False,
                                        extra_env=env(victim))
                if victim == 0:
                    feed = workers[0]
        verdicts: dict[str, InvoiceValidated] = {inv: workers[0].verdict(inv, timeout=120) for _, inv in sent}
        wrong = [(n, v.status, v.reason_codes, v.contract_version) for n, inv in sent
                 for v in [verdicts[inv]] if v.status is not VerdictStatus.APPROVED or v.contract_version != 2]
        assert wrong == [], f"priced by the version before the amendment (logs {[w.log_path for w in workers]})"
    finally:
        for worker in workers:
            stop(worker)

