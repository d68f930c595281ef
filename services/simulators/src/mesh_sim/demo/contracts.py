"""Chapter 1: the contracts are registered and activated through the registry's REST API."""

from __future__ import annotations

import httpx

from contract_schema.contract import ContractSnapshot

from .data import contract_bodies
from .outcomes import StepFailed, poll
from .output import note
from .stack import url_of
from .story import Contract, Story


class Contracts(Story):
    def register_contracts(self) -> str:
        self.need("contract-registry")
        made = []
        seen_before = self.processed("invoice-validator", "clm.contract.state.v1")
        for role, body in contract_bodies(self.run, self.today).items():
            resp = self.registry("POST", "/v1/contracts", json=body, headers={"Idempotency-Key": f"{self.run}-{role}"})
            if resp.status_code != 201:
                raise StepFailed(f"POST /v1/contracts ({role}) -> {resp.status_code}: {resp.text[:300]}")
            cid = resp.json()["contract_id"]
            act = self.registry("POST", f"/v1/contracts/{cid}/activate", headers={"If-Match": resp.headers["etag"]})
            if act.status_code != 200:
                raise StepFailed(f"activate {cid} -> {act.status_code}: {act.text[:300]}")
            self.contracts[role] = Contract(role, cid, body["counterparty"]["erp_vendor_id"], body["owner"]["email"],
                                            body["backup_owner"]["email"])
            note(f"→ registered and activated {role} contract {cid} ({body['title']})")
            made.append(cid)
        poll(lambda: {c.contract_id for c in self.w.find(ContractSnapshot, lambda c: c.status.value == "active")}
             >= set(made), self.timeout, "the 3 active snapshots on clm.contract.state.v1")
        observed = "3 contracts active; their snapshots are on clm.contract.state.v1"
        # Invoices and contracts travel on different topics: an ERP posts invoices days after activation, the
        # demo seconds after. Wait until the validator has consumed the 6 snapshots (created + activated).
        if seen_before is not None:
            try:
                poll(lambda: (self.processed("invoice-validator", "clm.contract.state.v1") or 0) >= seen_before + 6,
                     self.timeout, "the validator consuming the 6 snapshots (its mesh_records_processed_total)")
                observed += "; the validator has consumed them"
            except StepFailed as exc:
                observed += f"; {exc}"
        return observed

    def processed(self, service: str, topic: str) -> float | None:
        """A service's mesh_records_processed_total for a topic from its /metrics (None: not exposed)."""
        if service not in self.healthy:
            return None
        try:
            text = self.http.get(url_of(service) + "/metrics", timeout=3).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith("mesh_records_processed_total{") and f'topic="{topic}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0 if "mesh_records_processed_total" in text else None
