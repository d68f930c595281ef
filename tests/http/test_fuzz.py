"""Schemathesis over the OpenAPI document of every HTTP service (registry, validator intake, renewal
webhook, notifier), valid and invalid data for every operation, with a token of tenant t1 (and a valid
signature on the webhook, so bodies get past it): never a 5xx, every 4xx names the field (or is an
auth/lookup answer). Examples per operation and mode: MESH_FUZZ_EXAMPLES (default 15), which keeps
the run around a minute on a 2-core box; raise it for a longer hunt."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from mesh_common.signing import SIGNATURE_HEADER, sign

from .conftest import WEBHOOK_SECRETS, Service, bearer

EXAMPLES = int(os.environ.get("MESH_FUZZ_EXAMPLES", "15"))
# Answers about who is asking or what exists, not about a field.
NO_FIELD_NEEDED = {401, 403, 404, 405, 406, 409, 412, 428}


def _send(session: requests.Session, service: Service, kwargs: dict[str, Any]) -> requests.Response:
    if service.name == "renewal-sync":  # sign what is sent, as the tenant's CRM would
        raw = kwargs.pop("data", None)
        if "json" in kwargs:
            raw = json.dumps(kwargs.pop("json")).encode()
        raw = raw if isinstance(raw, bytes) else (raw or "").encode()
        kwargs["data"] = raw
        kwargs.setdefault("headers", {})[SIGNATURE_HEADER] = sign(WEBHOOK_SECRETS["t1"], raw)
    return session.request(**kwargs, timeout=30)


def _own_tenant(case: Any, service: Service) -> Any:
    """Point a generated body at tenant t1 (and at its contract on the webhook), past the tenant checks."""
    if isinstance(case.body, dict):
        case.body["tenant_id"] = "t1"
        if service.name == "renewal-sync":
            case.body["contract_id"] = service.ids["t1"]
    return case


def _problems(service: Service, session: requests.Session, case: Any) -> list[str]:
    kwargs = case.as_transport_kwargs(base_url=service.url, headers=bearer("t1"))
    resp = _send(session, service, kwargs)
    where = f"{service.name} {kwargs.get('method')} {kwargs.get('url')}"
    if resp.status_code >= 500 and resp.status_code != 503:
        return [f"{where}: {resp.status_code} {resp.text[:300]}"]
    if 400 <= resp.status_code < 500 and resp.status_code not in NO_FIELD_NEEDED:
        detail = resp.json().get("detail") if resp.headers.get("content-type", "").startswith("application/json") \
            else None
        if not (isinstance(detail, list) and detail and all(isinstance(d, dict) and d.get("field") is not None
                                                           for d in detail)):
            return [f"{where}: {resp.status_code} without a field: {resp.text[:300]}"]
    return []


@pytest.mark.parametrize("service_name", ["registry", "validator", "renewal", "notifier"])
def test_fuzzing_the_openapi_finds_no_5xx_and_every_4xx_names_the_field(
        service_name: str, request: pytest.FixtureRequest) -> None:
    service: Service = request.getfixturevalue(service_name)
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    problems: list[str] = []
    calls = 0
    with requests.Session() as session:  # one keep-alive connection for the whole run
        for result in schema.get_all_operations():
            operation = result.ok()
            strategies = [operation.as_strategy(GenerationMode.POSITIVE),
                          operation.as_strategy(GenerationMode.NEGATIVE)]
            known = {k: v for k, v in service.ids.items() if "{" + k + "}" in operation.path}
            if known:  # also on resources that exist, so the fuzzer gets past the 404
                strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known))
            if operation.method.upper() == "POST" and operation.body:  # bodies of the caller's own tenant
                strategies.append(operation.as_strategy(GenerationMode.POSITIVE).map(
                    lambda case: _own_tenant(case, service)))
            strategy = st.one_of(strategies)

            @settings(max_examples=EXAMPLES * len(strategies), deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                problems.extend(_problems(service, session, case))

            run()
    assert calls > 0
    assert problems == [], "\n".join(sorted(set(problems))[:30])
