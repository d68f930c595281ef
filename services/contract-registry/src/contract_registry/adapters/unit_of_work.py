"""The unit of work on PostgreSQL: one SQLAlchemy session and transaction, the repository on it, and
the relays' wake-up (NOTIFY) when the transaction wrote outbox records."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .ports import DuplicateKey, OutboxRecord
from .repository import SqlContractRepository


class _Repository(SqlContractRepository):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.enqueued = 0

    def enqueue(self, record: OutboxRecord) -> None:
        super().enqueue(record)
        self.enqueued += 1

    def enqueue_many(self, records: list[OutboxRecord]) -> None:
        super().enqueue_many(records)
        self.enqueued += len(records)


class SqlUnitOfWork:
    def __init__(self, sessions: sessionmaker[Session], notify_channel: str) -> None:
        self.sessions = sessions
        self.notify_channel = notify_channel

    def __enter__(self) -> Self:
        self.session = self.sessions()
        self.session.begin()
        self.contracts = _Repository(self.session)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.session.rollback()  # a no-op after commit
        self.session.close()
        if isinstance(exc, IntegrityError):
            raise DuplicateKey(str(exc.orig)) from exc

    def commit(self) -> None:
        if self.contracts.enqueued:
            # PostgreSQL delivers the notification only when (and if) the transaction commits.
            self.session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self.notify_channel})
        try:
            self.session.commit()
        except IntegrityError as exc:
            raise DuplicateKey(str(exc.orig)) from exc
