"""The CRM adapters' request shapes (pure: no HTTP is made)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from renewal_sync.adapters.crm import HubSpotClient, SalesforceClient
from renewal_sync.settings import RenewalSettings

from contract_schema.renewal import OpportunityStatus, RenewalOpportunity, RenewalStage
from mesh_common.delivery import CircuitBreaker, RetryPolicy


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
    assert "Contract_Id__c" not in body  # the external id goes in the URL
    assert client.payload(_opp(OpportunityStatus.WON))["StageName"] == "Closed Won"


def test_hubspot_payload_upserts_by_the_unique_contract_id_property() -> None:
    client = HubSpotClient(RenewalSettings(crm="hubspot", hubspot_id_property="contract_id"), RetryPolicy(),
                           CircuitBreaker("t"))
    item = client.payload(_opp(OpportunityStatus.LOST))["inputs"][0]
    assert item["idProperty"] == "contract_id" and item["id"] == "C-9"
    assert item["properties"]["contract_id"] == "C-9" and item["properties"]["dealstage"] == "closedlost"
    assert item["properties"]["closedate"] == "2026-12-01" and item["properties"]["renewal_stage"] == "60d"
