"""Invoices waiting for their contract (unknown, or a draft not activated yet): the `parked` table, the
due index that expires them on the injected clock, and their removal once decided."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import faust
from prometheus_client import Counter

from contract_schema import InvoiceReceived
from mesh_common.clock import Clock
from mesh_common.due_index import DueIndex
from mesh_common.faust_delivery import DeliveryBarrier

from .settings import ValidatorSettings

log = logging.getLogger(__name__)

PARKED = Counter("invoice_validator_parked_total", "Invoices parked until their contract is known")


class Parking:
    """Mixed into the ValidatorService: what it needs from it is declared here."""

    settings: ValidatorSettings
    clock: Clock
    delivery: DeliveryBarrier
    parked: Any  # park key -> [{"ce_id", "invoice", "parked_at", "partition"}]
    expiry_topic: Any
    # (park key, invoice ce_id, partition the entry lives in) -> when its wait is over.
    park_due: DueIndex[tuple[str, str, int]]

    async def route_invoice(self, invoice: InvoiceReceived, ce_id: str, *, parked_at: str | None = None,
                            expired: bool = False) -> bool:
        raise NotImplementedError

    async def _on_parked_recovered(self) -> None:
        self.park_due = DueIndex()
        timeout = timedelta(seconds=self.settings.park_timeout_seconds)
        for key, entries in list(self.parked.items()):
            for entry in entries or ():
                self.park_due.schedule((key, entry["ce_id"], entry.get("partition", 0)),
                                       datetime.fromisoformat(entry["parked_at"]) + timeout)

    async def _expiry_agent(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                order = json.loads(event.value)
                await self.expire_parked(order["key"], order["ce_id"])
            except Exception:  # an internal record we wrote ourselves; log, never crash the agent
                log.exception("park expiry failed for %r", event.value)

    async def _sweep(self) -> None:
        """Send an expiry order for every parked invoice whose wait is over (O(k log n) for k due)."""
        for (key, ce_id, partition), _ in list(self.park_due.pop_due(self.clock.now())):
            # To the partition the entry lives in: the expiry topic is co-partitioned with the source
            # topics, so the replica that owns the parked entry is the one that expires it.
            await self.expiry_topic.send(key=key.encode(), value=json.dumps({"key": key, "ce_id": ce_id}).encode(),
                                         partition=partition)

    # --- handlers ---------------------------------------------------------------------------

    async def _resolve_parked(self, key: str,
                              decide: Callable[[InvoiceReceived, dict[str, Any]], Awaitable[bool]]) -> None:
        """Re-check the invoices parked under a key (`decide` answers True when one stays parked).

        An entry is removed only once what deciding it sent (verdict, verdict entry, routed copy) is
        acknowledged: a kill in between leaves the entry, and the redelivered snapshot re-checks it
        (one verdict per invoice id still holds), instead of losing the invoice with its entry.
        """
        entries = self.parked.get(key)
        if not entries:
            return
        done = set()
        for entry in entries:
            invoice = InvoiceReceived.model_validate_json(entry["invoice"])
            if not await decide(invoice, entry):
                self.park_due.cancel((key, entry["ce_id"], entry.get("partition", 0)))
                done.add(entry["ce_id"])
        if done:
            await self._drop_parked(key, done)

    async def _drop_parked(self, key: str, ce_ids: set[str]) -> None:
        try:
            await self.delivery.wait()
        except Exception:  # a send failed: keep the entries; the record is redelivered and re-checks them
            log.exception("not removing parked invoices under %s: a send was not acknowledged", key)
            return
        # Re-read: other agents may have parked more invoices under the key while this one waited.
        rest = [e for e in self.parked.get(key) or () if e["ce_id"] not in ce_ids]
        if rest:
            self.parked[key] = rest
        elif self.parked.get(key) is not None:
            del self.parked[key]

    def _park_key(self, invoice: InvoiceReceived) -> str:
        return f"ref:{invoice.contract_ref}" if invoice.contract_ref else f"vendor:{invoice.vendor_id}"

    def _park(self, invoice: InvoiceReceived, ce_id: str, parked_at: str) -> None:
        key = self._park_key(invoice)
        entries = list(self.parked.get(key) or ())
        for e in entries:
            if e["ce_id"] == ce_id:  # redelivered, or re-checked and still waiting: keep its first wait
                due = datetime.fromisoformat(e["parked_at"]) + timedelta(seconds=self.settings.park_timeout_seconds)
                self.park_due.schedule((key, ce_id, e.get("partition", 0)), due)
                return
        event = faust.current_event()
        # The table write lands in the changelog partition of the record being processed.
        partition = event.message.partition if event is not None else 0
        entries.append({"ce_id": ce_id, "invoice": invoice.model_dump_json(), "parked_at": parked_at,
                        "partition": partition})
        self.parked[key] = entries
        due = datetime.fromisoformat(parked_at) + timedelta(seconds=self.settings.park_timeout_seconds)
        self.park_due.schedule((key, ce_id, partition), due)
        PARKED.inc()
        log.info("parked invoice %s until its contract is known (%s)", invoice.invoice_id, key)

    async def expire_parked(self, key: str, ce_id: str) -> None:
        entries = list(self.parked.get(key) or ())
        entry = next((e for e in entries if e["ce_id"] == ce_id), None)
        if entry is None:
            return  # resolved meanwhile
        invoice = InvoiceReceived.model_validate_json(entry["invoice"])
        await self.route_invoice(invoice, ce_id, parked_at=entry["parked_at"], expired=True)
        await self._drop_parked(key, {ce_id})
