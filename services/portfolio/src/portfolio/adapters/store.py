"""The read model on PostgreSQL: a writer (one transaction per consumed batch) and a reader (per tenant)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Self, TypeVar

from sqlalchemy import Connection, Engine, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from ..domain.projections import NO_TENANT, Row
from ..domain.rows import (
    AlertRow,
    ContractRow,
    DecisionRow,
    DeliveryRow,
    EventEntry,
    InvoiceRow,
    ObligationRow,
    RenewalRow,
    ScorecardRow,
)
from .tables import (
    ROW_TABLES,
    alerts,
    contracts,
    decisions,
    deliveries,
    events,
    invoices,
    model_version,
    obligations,
    renewals,
    scorecards,
)

T = TypeVar("T")
ROW_TYPES: dict[str, type[Row]] = {"contracts": ContractRow, "renewals": RenewalRow, "decisions": DecisionRow,
                                   "obligations": ObligationRow, "invoices": InvoiceRow, "alerts": AlertRow,
                                   "deliveries": DeliveryRow, "scorecards": ScorecardRow}


class SqlWriter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Self:
        self.conn: Connection = self.engine.connect()
        self.tx = self.conn.begin()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.tx.is_active:
            self.tx.rollback()
        self.conn.close()

    def record(self, entries: Sequence[EventEntry]) -> set[tuple[str, str]]:
        if not entries:
            return set()
        # executemany: SQLAlchemy batches the rows into multi-row INSERTs itself ("insertmanyvalues") from one
        # cached statement; a .values([...]) statement would be compiled anew for every batch.
        values = [e.model_dump(mode="json") | {"occurred_at": e.occurred_at} for e in entries]
        stmt = insert(events).on_conflict_do_nothing().returning(events.c.source, events.c.id)
        return {(r.source, r.id) for r in self.conn.execute(stmt, values)}

    def get(self, table: str, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        t, out = ROW_TABLES[table], dict[tuple[str, str], Row]()
        for chunk in _chunks(list(keys)):
            rows = self.conn.execute(select(t.c.tenant_id, t.c.key, t.c.data)
                                     .where(tuple_(t.c.tenant_id, t.c.key).in_(chunk)))
            out |= {(r.tenant_id, r.key): ROW_TYPES[table].model_validate(r.data) for r in rows}
        return out

    def put(self, table: str, rows: Mapping[tuple[str, str], Row]) -> None:
        if not rows:
            return
        t = ROW_TABLES[table]
        stmt = insert(t)
        upsert = stmt.on_conflict_do_update(index_elements=[t.c.tenant_id, t.c.key], set_={"data": stmt.excluded.data})
        self.conn.execute(upsert, [{"tenant_id": tenant, "key": key, "data": row.model_dump(mode="json")}
                                   for (tenant, key), row in rows.items()])

    def changed(self) -> None:
        self.conn.execute(update(model_version).where(model_version.c.id == 1)
                          .values(version=model_version.c.version + 1))

    def commit(self) -> None:
        self.tx.commit()


def _chunks(items: Sequence[T], size: int = 1000) -> list[Sequence[T]]:
    """Statements of at most `size` rows (PostgreSQL takes at most 65,535 parameters per statement)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


class SqlReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _rows(self, table: str, tenant: str) -> list[Row]:
        t = ROW_TABLES[table]
        with self.engine.connect() as conn:
            data = conn.execute(select(t.c.data).where(t.c.tenant_id == tenant).order_by(t.c.key)).scalars()
            return [ROW_TYPES[table].model_validate(d) for d in data]

    def contracts(self, tenant: str) -> list[ContractRow]:
        return [r for r in self._rows(contracts.name, tenant) if isinstance(r, ContractRow)]

    def renewals(self, tenant: str) -> list[RenewalRow]:
        return [r for r in self._rows(renewals.name, tenant) if isinstance(r, RenewalRow)]

    def decisions(self, tenant: str) -> list[DecisionRow]:
        return [r for r in self._rows(decisions.name, tenant) if isinstance(r, DecisionRow)]

    def obligations(self, tenant: str) -> list[ObligationRow]:
        return [r for r in self._rows(obligations.name, tenant) if isinstance(r, ObligationRow)]

    def invoices(self, tenant: str) -> list[InvoiceRow]:
        return [r for r in self._rows(invoices.name, tenant) if isinstance(r, InvoiceRow)]

    def alerts(self, tenant: str) -> list[AlertRow]:
        return [r for r in self._rows(alerts.name, tenant) if isinstance(r, AlertRow)]

    def deliveries(self, tenant: str) -> list[DeliveryRow]:
        """The deliveries of the tenant's alerts."""
        mine = select(alerts.c.key).where(alerts.c.tenant_id == tenant)
        with self.engine.connect() as conn:
            data = conn.execute(select(deliveries.c.data).where(deliveries.c.tenant_id == NO_TENANT,
                                                                deliveries.c.key.in_(mine))).scalars()
            return [DeliveryRow.model_validate(d) for d in data]

    def scorecards(self, tenant: str) -> list[ScorecardRow]:
        """The scorecards of the tenant's contracts."""
        mine = select(contracts.c.key).where(contracts.c.tenant_id == tenant)
        with self.engine.connect() as conn:
            data = conn.execute(select(scorecards.c.data).where(scorecards.c.tenant_id == NO_TENANT,
                                                                scorecards.c.data["contract_id"].astext.in_(mine))
                                .order_by(scorecards.c.key)).scalars()
            return [ScorecardRow.model_validate(d) for d in data]

    def contract(self, tenant: str, contract_id: str) -> ContractRow | None:
        with self.engine.connect() as conn:
            data = conn.execute(select(contracts.c.data).where(contracts.c.tenant_id == tenant,
                                                               contracts.c.key == contract_id)).scalar()
        return None if data is None else ContractRow.model_validate(data)

    def events_of(self, tenant: str, contract_id: str) -> list[EventEntry]:
        # Events that carry no tenant (notifications) are the tenant's when their alert is.
        mine = select(alerts.c.key).where(alerts.c.tenant_id == tenant)
        with self.engine.connect() as conn:
            rows = conn.execute(select(events).where(
                events.c.contract_id == contract_id,
                (events.c.tenant_id == tenant)
                | (events.c.tenant_id.is_(None) & events.c.payload["alert_id"].astext.in_(mine)))
                .order_by(events.c.occurred_at))
            return [EventEntry.model_validate(dict(r._mapping)) for r in rows]

    def version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(model_version.c.version).where(model_version.c.id == 1)).scalar() or 0)
