"""Which tenant a contract belongs to, from renewal-sync's own state (for the decisions webhook)."""

from __future__ import annotations

import psycopg

from mesh_common.pg import libpq_url


class ContractTenants:
    """A short connection per lookup: webhooks are rare, and a database restart must not break them for good."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = libpq_url(url)
        self.schema = schema

    def tenant_of(self, contract_id: str) -> str | None:
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            row = conn.execute(f"SELECT state->'contract'->>'tenant_id' FROM {self.schema}.contract_state "
                               "WHERE contract_id = %s", (contract_id,)).fetchone()
        return None if row is None else str(row[0])
