"""The CRM adapters' request shapes (pure: no HTTP is made)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from renewal_sync.adapters.crm import HubSpotClient, SalesforceClient, salesforce_outcomes
from renewal_sync.settings import RenewalSettings

from contract_schema.renewal import OpportunityStatus, RenewalOpportunity, RenewalStage
from mesh_common.delivery import CircuitBreaker, DeliveryError, RetryPolicy


def _opp(status: OpportunityStatus = OpportunityStatus.OPEN) -> RenewalOpportunity:
    return RenewalOpportunity(
        contract_id="C-9", tenant_id="t1", contract_title="Hosting", counterparty_name="Acme",
        crm_account_id="001ACME", stage=RenewalStage.DAYS_60, status=status, close_date=date(2026, 12, 1),
        end_date=date(2026, 12, 31), amount="120000.00", currency="EUR",  # type: ignore[arg-type]
        owner={"name": "Olga", "email": "olga@example.com"}, auto_renewal_risk=True,  # type: ignore[arg-type]
        updated_at=datetime(2026, 10, 2, tzinfo=UTC))


def test_salesforce_payload_maps_status_stage_close_date_and_amount() -> None:
    client = SalesforceClient(RenewalSettings(crm="salesforce"), RetryPolicy(), CircuitBreaker("t"))
    body = client.payload(_opp())
    assert body["StageName"] == "Negotiation/Review" and body["Renewal_Stage__c"] == "60d"
    assert body["CloseDate"] == "2026-12-01" and body["Amount"] == "120000.00" and body["AccountId"] == "001ACME"
    assert body["Auto_Renewal_Risk__c"] is True and "Auto-renews" in body["Description"]
    assert client.payload(_opp(OpportunityStatus.WON))["StageName"] == "Closed Won"


def test_salesforce_collection_record_carries_its_type_and_external_id() -> None:
    client = SalesforceClient(RenewalSettings(crm="salesforce", salesforce_batch_size=500), RetryPolicy(),
                              CircuitBreaker("t"))
    record = client.record(_opp())
    assert record["attributes"] == {"type": "Opportunity"} and record["Contract_Id__c"] == "C-9"
    assert record["Renewal_Stage__c"] == "60d"
    assert client.max_batch == 200  # the API's limit, whatever the setting says


def _answer(body: object) -> httpx.Response:
    return httpx.Response(200, json=body)


def test_salesforce_results_fail_only_the_refused_records_transient_or_permanent() -> None:
    outcomes = salesforce_outcomes(_answer([
        {"id": "006A", "success": True, "errors": [], "created": True},
        {"id": None, "success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked",
                                                   "fields": []}]},
        {"id": None, "success": False, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                                   "message": "Amount too high", "fields": ["Amount"]}]},
    ]), 3)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], DeliveryError) and not outcomes[1].permanent
    assert "UNABLE_TO_LOCK_ROW: locked" in str(outcomes[1])
    assert isinstance(outcomes[2], DeliveryError) and outcomes[2].permanent
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION: Amount too high (Amount)" in str(outcomes[2])


@pytest.mark.parametrize("body", [[{"success": True}], {"results": []}, "not json"])
def test_salesforce_results_that_do_not_match_the_records_fail_the_whole_call_for_a_retry(body: object) -> None:
    response = httpx.Response(200, text=body) if isinstance(body, str) else _answer(body)
    with pytest.raises(DeliveryError) as failed:
        salesforce_outcomes(response, 2)
    assert not failed.value.permanent


def test_hubspot_payload_upserts_by_the_unique_contract_id_property() -> None:
    client = HubSpotClient(RenewalSettings(crm="hubspot", hubspot_id_property="contract_id"), RetryPolicy(),
                           CircuitBreaker("t"))
    item = client.payload(_opp(OpportunityStatus.LOST))["inputs"][0]
    assert item["idProperty"] == "contract_id" and item["id"] == "C-9"
    assert item["properties"]["contract_id"] == "C-9" and item["properties"]["dealstage"] == "closedlost"
    assert item["properties"]["closedate"] == "2026-12-01" and item["properties"]["renewal_stage"] == "60d"
