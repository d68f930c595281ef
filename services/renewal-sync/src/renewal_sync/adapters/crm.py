"""CRM adapters over httpx, each speaking its API's real shape. Both upsert by the contract id,
so a retry or a restart never creates a second opportunity.

- Salesforce REST: OAuth2 client-credentials token from {base}/services/oauth2/token, then the sObject
  Collections upsert, PATCH /services/data/vXX.X/composite/sobjects/Opportunity/<external id field>, up to
  200 records a call with allOrNone false: one result per record, so one bad record fails alone.
- HubSpot CRM v3: private-app bearer token, POST /crm/v3/objects/deals/batch/upsert with
  idProperty = a unique deal property holding the contract id (up to 100 a call).

`upsert_batch` raises DeliveryError when the call as a whole failed (every record of it failed) and
otherwise returns one outcome per record, in order: None (upserted) or that record's DeliveryError.
Retries, Retry-After and the circuit breaker are mesh_common.delivery's; adapters only build
requests, map fields and read the per-record results (docs/adr/0016-crm-batched-upserts.md).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import httpx

from contract_schema.renewal import OpportunityStatus, RenewalOpportunity
from mesh_common.delivery import CircuitBreaker, DeliveryError, RetryPolicy, send_with_retries
from renewal_sync.settings import RenewalSettings

RecordOutcome = DeliveryError | None  # None: the record was upserted

# Per-record Salesforce errors worth another round: row lock contention and timeouts inside the org, or a
# record rolled back only because another one failed. Any other code (a validation rule, a bad field
# value, a missing account) is the record's own problem and permanent, as a 4xx is for a whole call.
SALESFORCE_TRANSIENT = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_RUNNING_TOO_LONG", "QUERY_TIMEOUT",
                                  "SERVER_UNAVAILABLE", "ALL_OR_NONE_OPERATION_ROLLED_BACK"})


class CrmClient(Protocol):
    name: str
    max_batch: int  # opportunities per call
    breaker: CircuitBreaker

    async def upsert_batch(self, opps: list[RenewalOpportunity]) -> list[RecordOutcome]: ...

    async def aclose(self) -> None: ...


def _description(opp: RenewalOpportunity) -> str:
    lines = [f"Renewal of {opp.contract_title} ({opp.contract_id}) with {opp.counterparty_name}.",
             f"Stage {opp.stage.value}; notice deadline {opp.close_date}; end date {opp.end_date}.",
             f"Owner {opp.owner.name} <{opp.owner.email}>"
             + (f"; backup {opp.backup_owner.name} <{opp.backup_owner.email}>." if opp.backup_owner else ".")]
    if opp.auto_renewal_risk:
        lines.append("Auto-renews unless notice is given by the close date.")
    if opp.sla_record is not None:
        r = opp.sla_record
        lines.append(f"SLA {r.window_start}..{r.window_end}: {r.sla_met}/{r.sla_measurements} met, "
                     f"credits {r.credits_earned} {r.currency or opp.currency}.")
    return " ".join(lines)


class SalesforceClient:
    name = "salesforce"
    _STAGES = {OpportunityStatus.OPEN: "Negotiation/Review", OpportunityStatus.WON: "Closed Won",
               OpportunityStatus.LOST: "Closed Lost"}

    def __init__(self, cfg: RenewalSettings, policy: RetryPolicy, breaker: CircuitBreaker,
                 http: httpx.AsyncClient | None = None) -> None:
        self.cfg, self.policy, self.breaker = cfg, policy, breaker
        self.http = http or httpx.AsyncClient(base_url=cfg.crm_base_url, timeout=cfg.crm_timeout)
        self.max_batch = max(1, min(200, cfg.salesforce_batch_size))  # the collection takes up to 200 records
        self._token: str | None = None
        self._instance: str | None = None
        self._lock = asyncio.Lock()

    async def _ensure_token(self, force: bool = False) -> str:
        async with self._lock:
            if self._token is None or force:
                response = await send_with_retries(
                    lambda: self.http.post("/services/oauth2/token", data={
                        "grant_type": "client_credentials", "client_id": self.cfg.salesforce_client_id,
                        "client_secret": self.cfg.salesforce_client_secret}),
                    policy=self.policy, breaker=self.breaker)
                body = response.json()
                self._token, self._instance = body["access_token"], body.get("instance_url")
            return self._token

    def payload(self, opp: RenewalOpportunity) -> dict[str, Any]:
        return {
            "Name": f"Renewal: {opp.contract_title or opp.contract_id}",
            "StageName": self._STAGES[opp.status],
            "CloseDate": (opp.close_date or opp.updated_at.date()).isoformat(),
            "Amount": str(opp.amount),
            "CurrencyIsoCode": opp.currency,
            "Description": _description(opp),
            "Renewal_Stage__c": opp.stage.value,
            "Auto_Renewal_Risk__c": opp.auto_renewal_risk,
            "Renewal_Decision__c": opp.decision,
            "Contract_End_Date__c": opp.end_date.isoformat() if opp.end_date else None,
            "Owner_Email__c": opp.owner.email,
            "Backup_Owner_Email__c": opp.backup_owner.email if opp.backup_owner else None,
        } | ({"AccountId": opp.crm_account_id} if opp.crm_account_id else {})

    def record(self, opp: RenewalOpportunity) -> dict[str, Any]:
        """One element of a collection upsert: the type and the external id travel in the record."""
        return {"attributes": {"type": "Opportunity"}, self.cfg.salesforce_external_id_field: opp.contract_id,
                **self.payload(opp)}

    async def upsert_batch(self, opps: list[RenewalOpportunity]) -> list[RecordOutcome]:
        path = (f"/services/data/{self.cfg.salesforce_api_version}/composite/sobjects/Opportunity/"
                f"{self.cfg.salesforce_external_id_field}")
        body = {"allOrNone": False, "records": [self.record(opp) for opp in opps]}
        try:
            response = await self._patch(path, body, await self._ensure_token())
        except DeliveryError as exc:
            if exc.status != 401:  # a 401 means the token expired: fetch a new one, once
                raise
            response = await self._patch(path, body, await self._ensure_token(force=True))
        return salesforce_outcomes(response, len(opps))
    async def _patch(self, path: str, body: dict[str, Any], token: str) -> httpx.Response:
        url = (self._instance.rstrip("/") + path) if self._instance else path
        return await send_with_retries(
            lambda: self.http.patch(url, json=body, headers={"Authorization": f"Bearer {token}"}),
            policy=self.policy, breaker=self.breaker)

    async def aclose(self) -> None:
        await self.http.aclose()


def salesforce_outcomes(response: httpx.Response, expected: int) -> list[RecordOutcome]:
    """The UpsertResult list of a collection call (same order as the records) as per-record outcomes."""
    try:
        results = response.json()
    except ValueError:
        results = None
    if not isinstance(results, list) or len(results) != expected or not all(isinstance(r, dict) for r in results):
        # Not knowing which records were upserted, the whole call counts as failed (an upsert is idempotent).
        raise DeliveryError(f"collection upsert answered {response.status_code} without {expected} results: "
                            f"{response.text[:300]}", permanent=False, status=response.status_code)
    outcomes: list[RecordOutcome] = []
    for result in results:
        if result.get("success") is True:
            outcomes.append(None)
            continue
        errors = [e for e in result.get("errors") or [] if isinstance(e, dict)] or [{"statusCode": "UNKNOWN"}]
        codes = [str(e.get("statusCode")) for e in errors]
        detail = "; ".join(f"{e.get('statusCode')}: {e.get('message', '')}"
                           + (f" ({', '.join(map(str, e['fields']))})" if e.get("fields") else "") for e in errors)
        outcomes.append(DeliveryError(f"Salesforce rejected the record: {detail}"[:500],
                                      permanent=not all(c in SALESFORCE_TRANSIENT for c in codes)))
    return outcomes


class HubSpotClient:
    name = "hubspot"
    _STAGES = {OpportunityStatus.OPEN: "contractsent", OpportunityStatus.WON: "closedwon",
               OpportunityStatus.LOST: "closedlost"}

    def __init__(self, cfg: RenewalSettings, policy: RetryPolicy, breaker: CircuitBreaker,
                 http: httpx.AsyncClient | None = None) -> None:
        self.cfg, self.policy, self.breaker = cfg, policy, breaker
        self.http = http or httpx.AsyncClient(base_url=cfg.crm_base_url, timeout=cfg.crm_timeout)
        self.max_batch = max(1, min(100, cfg.hubspot_batch_size))  # the API takes up to 100 inputs

    def payload(self, opp: RenewalOpportunity) -> dict[str, Any]:
        return {"inputs": [self._input(opp)]}

    def _input(self, opp: RenewalOpportunity) -> dict[str, Any]:
        prop = self.cfg.hubspot_id_property
        properties: dict[str, Any] = {
            prop: opp.contract_id,
            "dealname": f"Renewal: {opp.contract_title or opp.contract_id}",
            "dealstage": self._STAGES[opp.status],
            "pipeline": self.cfg.hubspot_pipeline,
            "closedate": (opp.close_date or opp.updated_at.date()).isoformat(),
            "amount": str(opp.amount),
            "deal_currency_code": opp.currency,
            "description": _description(opp),
            "renewal_stage": opp.stage.value,
            "auto_renewal_risk": str(opp.auto_renewal_risk).lower(),
            "renewal_decision": opp.decision or "",
        }
        return {"idProperty": prop, "id": opp.contract_id, "properties": properties}

    async def upsert_batch(self, opps: list[RenewalOpportunity]) -> list[RecordOutcome]:
        body = {"inputs": [self._input(opp) for opp in opps]}
        headers = {"Authorization": f"Bearer {self.cfg.hubspot_token}"}
        await send_with_retries(
            lambda: self.http.post("/crm/v3/objects/deals/batch/upsert", json=body, headers=headers),
            policy=self.policy, breaker=self.breaker)
        return [None] * len(opps)  # a 2xx batch upsert applied every input

    async def aclose(self) -> None:
        await self.http.aclose()


def crm_client(cfg: RenewalSettings) -> CrmClient | None:
    # A Retry-After longer than an in-round backoff ends the round: the relay waits for it durably.
    policy = RetryPolicy(attempts=cfg.crm_attempts, base_delay=cfg.crm_base_delay, max_delay=cfg.crm_max_delay,
                         max_retry_after=cfg.crm_max_delay)
    breaker = CircuitBreaker(f"crm-{cfg.crm}", threshold=cfg.crm_breaker_threshold, reset_after=cfg.crm_breaker_reset)
    if cfg.crm == "salesforce":
        return SalesforceClient(cfg, policy, breaker)
    if cfg.crm == "hubspot":
        return HubSpotClient(cfg, policy, breaker)
    return None
