"""Chapter 4: the renewal stages of the auto-renewing contract, as the clock moves, upserted in the CRM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .outcomes import poll
from .stack import url_of
from .story import Story


class Renewals(Story):
    def renewal_stage(self, stage: str, day: int) -> Callable[[], str]:
        def run() -> str:
            self.need("renewal-sync", "crm-simulator")
            self.need_contracts("auto-renew")
            c = self.contracts["auto-renew"]
            self.clock_to(self.at(day))

            def upserted() -> dict[str, Any] | None:
                opps: list[dict[str, Any]] = self.http.get(url_of("crm-simulator") + "/opportunities").json()
                for opp in opps:
                    if opp["external_id"] == c.contract_id and any(
                            stage in (h["fields"].get("Renewal_Stage__c"), h["fields"].get("renewal_stage"))
                            for h in opp["history"]):
                        return opp
                return None

            opp = poll(upserted, self.timeout, f"opportunity {c.contract_id} at stage {stage} in the CRM simulator")
            f = opp["fields"]
            return (f"CRM opportunity {opp['id']}: stage {f.get('Renewal_Stage__c')}, {f.get('StageName')}, "
                    f"close {f.get('CloseDate')}, amount {f.get('Amount')} {f.get('CurrencyIsoCode')}, "
                    f"{len(opp['history'])} upserts, auto-renewal risk {f.get('Auto_Renewal_Risk__c')}")
        return run
