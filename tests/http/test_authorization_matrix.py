"""Every route of every HTTP service, read from its OpenAPI document: without a token 401, with a token
lacking the scope 403, with another tenant's token 404 (or the tenant-crossing refusal). A new route
is in the matrix by being in the document; one that is deliberately public or signed instead of
token-protected has to be listed here, with what protects it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from contract_registry.examples import draft, terms

from .conftest import Service, bearer

OPS = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}  # probes: public on every service

# Routes protected by something other than a bearer token, and an unauthenticated call that must be refused.
SIGNED: dict[str, dict[tuple[str, str], int]] = {
    "renewal-sync": {("POST", "/v1/crm/decisions"): 401},  # HMAC signature of the tenant's CRM
    "notifier": {("GET", "/v1/alerts/{alert_id}/ack"): 422,  # signed link: exp + sig required
                 ("GET", "/v1/calendar/{token}.ics"): 404},  # capability token of the owner's feed
}

# A valid request per route, so that another tenant's token gets past validation to the tenant check.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/contracts"): draft(),
    ("POST", "/v1/contracts:import"): draft(),  # one record (a one-line NDJSON body)
    ("POST", "/v1/contracts/{contract_id}/amendments"): {"effective_from": "2026-05-01", "reason": "uplift",
                                                         "terms": terms()},
    ("POST", "/v1/contracts/{contract_id}/terminate"): {"reason": "test"},
    ("POST", "/v1/contracts/{contract_id}/renew"): {},
    ("POST", "/v1/invoices"): {"tenant_id": "t1", "vendor_id": "V-1", "invoice_number": "N-1",
                               "issue_date": "2026-03-31", "currency": "EUR",
                               "lines": [{"line_no": 1, "item_code": "X", "quantity": "1", "unit": "HUR",
                                          "unit_price": "1", "amount": "1", "service_date": "2026-03-01"}]},
}
HEADERS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/v1/contracts/{contract_id}/amendments"): {"If-Match": '"1"'},
}
# Routes without a resource id: another tenant acts in its own tenant; what it must not see or do.
COLLECTIONS: dict[tuple[str, str], int] = {
    ("POST", "/v1/contracts"): 201,  # creates its own contract
    ("POST", "/v1/contracts:import"): 202,  # starts its own import
    ("GET", "/v1/contracts"): 200,  # lists its own contracts (checked: not t1's)
    ("POST", "/v1/invoices"): 422,  # an invoice naming tenant t1 with t2's token: tenant_id refused
}


def operations(service: Service) -> list[tuple[str, str]]:
    doc = httpx.get(service.url + "/openapi.json", timeout=10).json()
    return sorted((method.upper(), path) for path, item in doc["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete"))


def url_for(service: Service, path: str) -> str:
    out = path
    for name in [p.strip("{}") for p in path.split("/") if p.startswith("{")]:
        name = name.split("}")[0]
        if name not in service.ids:
            raise AssertionError(f"{service.name} {path}: no t1 resource for path parameter {name!r} in the matrix")
        out = out.replace("{" + name + "}", service.ids[name])
    return service.url + out


def check(service: Service) -> list[str]:
    ops = operations(service)
    signed = SIGNED.get(service.name, {})
    missing = (OPS | set(signed)) - set(ops)
    failures = [f"{service.name}: listed route {m} is not in the OpenAPI document" for m in sorted(missing)]
    for method, path in ops:
        route = (method, path)
        url = url_for(service, path)
        kwargs: dict[str, Any] = {"json": BODIES.get(route)} if route in BODIES else {}
        extra = HEADERS.get(route, {})
        if route in OPS:
            continue
        if route in signed:
            got = httpx.request(method, url, timeout=30, headers=extra, **kwargs).status_code
            if got != signed[route]:
                failures.append(f"{service.name} {method} {path} unsigned: {got}, expected {signed[route]}")
            continue
        cases = [("no token", {}, 401), ("wrong scope", bearer("t1", "nothing:at-all"), 403),
                 ("another tenant", bearer("t2"), COLLECTIONS.get(route, 404))]
        for case, auth, expected in cases:
            resp = httpx.request(method, url, timeout=30, headers=auth | extra, **kwargs)
            if resp.status_code != expected:
                failures.append(f"{service.name} {method} {path} {case}: {resp.status_code}, expected {expected}"
                                f" ({resp.text[:200]})")
            elif case == "another tenant" and route == ("GET", "/v1/contracts"):
                seen = {c["contract_id"] for c in resp.json()["items"]}
                if service.ids["contract_id"] in seen:
                    failures.append(f"{service.name} GET /v1/contracts lists another tenant's contract")
    return failures


@pytest.mark.parametrize("service_name", ["registry", "validator", "renewal", "notifier"])
def test_every_route_refuses_no_token_wrong_scope_and_another_tenant(
        service_name: str, request: pytest.FixtureRequest) -> None:
    service: Service = request.getfixturevalue(service_name)
    assert check(service) == []
