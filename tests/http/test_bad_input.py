"""Bad HTTP input answers a 4xx naming the field, on real servers (uvicorn over loopback, real
PostgreSQL and Kafka), and the keep-alive connection stays usable for the next, valid request."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from contract_registry.examples import draft, terms

from contract_schema import InvoiceReceived
from contract_schema.codec import encode
from mesh_common.signing import SIGNATURE_HEADER, sign

from .conftest import WEBHOOK_SECRETS, Service, bearer

NUL = "a\x00b"
DEEP = b"[" * 100_000


def local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried `response` (same port: same connection)."""
    port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


def fields(response: httpx.Response) -> list[str]:
    return [d["field"] for d in response.json()["detail"]]


def test_registry_refuses_nul_characters_anywhere_naming_the_field_on_one_connection(registry: Service) -> None:
    cid = registry.ids["contract_id"]
    auth = bearer("t1")
    with registry.client() as http:
        first = http.get(f"/v1/contracts/{cid}", headers=auth)
        assert first.status_code == 200
        cases: list[tuple[str, str, dict[str, Any] | None, str]] = [
            ("POST", "/v1/contracts", draft(title=NUL), "title"),
            ("POST", "/v1/contracts", draft(tags=["ok", NUL]), "tags[1]"),
            ("POST", "/v1/contracts", draft(counterparty={**draft()["counterparty"], "name": NUL}),
             "counterparty.name"),
            ("GET", "/v1/contracts?owner=" + "a%00b", None, "owner"),
            ("GET", "/v1/contracts/C%00x", None, "contract_id"),
            ("GET", "/v1/contracts/C%00x/audit", None, "contract_id"),
            ("POST", "/v1/contracts/C%00x/activate", None, "contract_id"),
            ("POST", f"/v1/contracts/{cid}/terminate", {"reason": NUL}, "reason"),
        ]
        for method, path, body, field in cases:
            resp = http.request(method, path, json=body, headers=auth)
            assert resp.status_code == 422, (path, resp.status_code, resp.text)
            assert field in fields(resp), (path, resp.text)
        # Too large for contract_versions.total_value NUMERIC(20, 6).
        huge = http.post("/v1/contracts", json=draft(terms=terms(total_value="100000000000000")), headers=auth)
        assert huge.status_code == 422 and "terms.total_value" in fields(huge), huge.text
        ok = http.post("/v1/contracts", json=draft(terms=terms(total_value="99999999999999.99")), headers=auth)
        assert ok.status_code == 201, ok.text
        deep = http.post("/v1/contracts", content=DEEP, headers=auth | {"Content-Type": "application/json"})
        assert deep.status_code == 400 and fields(deep) == ["body"], deep.text
        last = http.get(f"/v1/contracts/{cid}", headers=auth)
        assert last.status_code == 200
        assert local_port(last) == local_port(first)  # every error above left the connection open


def test_registry_edges_of_dates_amounts_and_text_answer_4xx_naming_the_field(registry: Service) -> None:
    auth = bearer("t1")
    with registry.client() as http:
        long_lived = http.post("/v1/contracts", json=draft(terms=terms(end_date="9999-12-31", auto_renew=True)),
                               headers=auth).json()["contract_id"]
        assert http.post(f"/v1/contracts/{long_lived}/activate", headers=auth).status_code == 200
        past_9999 = http.post(f"/v1/contracts/{long_lived}/renew", json={"renewal_term_months": 120}, headers=auth)
        assert past_9999.status_code == 422 and fields(past_9999) == ["renewal_term_months"], past_9999.text
        for value in ("1e-999999", "0.0000001"):  # NUMERIC(20, 6) cannot hold the first, would round the second
            tiny = http.post("/v1/contracts", json=draft(terms=terms(total_value=value)), headers=auth)
            assert tiny.status_code == 422 and fields(tiny) == ["terms.total_value"], tiny.text
        surrogate = json.dumps(draft(title="SURROGATE")).replace("SURROGATE", "\\ud800").encode()
        bad_utf8 = http.post("/v1/contracts", content=surrogate, headers=auth | {"Content-Type": "application/json"})
        assert bad_utf8.status_code == 422 and fields(bad_utf8) == ["title"], bad_utf8.text
        # X-Request-ID lands in audit_log.request_id (200 characters): kept, cut to the column.
        assert http.post(f"/v1/contracts/{long_lived}/terminate", json={}, headers=auth | {
            "X-Request-ID": "r" * 500}).status_code == 200
        audit = http.get(f"/v1/contracts/{long_lived}/audit", headers=auth).json()["items"]
        assert audit[-1]["request_id"] == "r" * 200


def test_registry_validation_errors_never_echo_a_large_input(registry: Service) -> None:
    body = draft()
    body["terms"] = "x" * 900_000  # under the 1 MB body limit, wrong type: a 422 that used to echo it all
    resp = httpx.post(registry.url + "/v1/contracts", json=body, headers=bearer("t1"), timeout=30)
    assert resp.status_code == 422 and "terms" in fields(resp)
    assert len(resp.content) < 5_000, len(resp.content)
    long_id = httpx.get(registry.url + "/v1/contracts/" + "c" * 8000, headers=bearer("t1"), timeout=30)
    assert long_id.status_code == 404 and len(long_id.content) < 1_000, long_id.text[:300]


def test_validator_intake_deep_json_nul_and_an_event_too_large_for_kafka(validator: Service) -> None:
    auth = bearer("t1", "invoices:write", "invoices:read")
    json_ct = {"Content-Type": "application/json"}
    with validator.client() as http:
        first = http.get(f"/v1/invoices/{validator.ids['invoice_id']}/verdict", headers=auth)
        assert first.status_code == 200
        deep = http.post("/v1/invoices", content=DEEP, headers=auth | json_ct)
        assert deep.status_code == 400 and fields(deep) == ["body"], deep.text
        nul = http.post("/v1/invoices", json={"vendor_id": NUL, "lines": []}, headers=auth)
        assert nul.status_code == 422 and "vendor_id" in fields(nul), nul.text

        # 5,000 lines under the 1 MB HTTP limit whose canonical event is over Kafka's message size.
        lines = [{"line_no": i, "item_code": f"ITEM-{i:05d}-" + "x" * 50, "quantity": "1", "unit": "HUR",
                  "unit_price": "1.00", "amount": "1.00", "service_date": "2026-03-01"} for i in range(1, 5001)]
        invoice = {"vendor_id": "V-big", "invoice_number": "N-big", "issue_date": "2026-03-31",
                   "currency": "EUR", "lines": lines}
        raw = json.dumps(invoice, separators=(",", ":")).encode()
        assert len(raw) < validator.extra["settings"].max_body_bytes
        event = InvoiceReceived.model_validate(invoice | {"invoice_id": "x", "tenant_id": "t1",
                                                          "received_at": datetime.now(UTC)})
        assert len(encode(event, source="/t").value or b"") > 1_000_000  # the producer's message.max.bytes
        big = http.post("/v1/invoices", content=raw, headers=auth | json_ct)
        assert big.status_code == 413, big.text
        assert fields(big) == ["body"] and "broker" in big.json()["detail"][0]["problem"]

        last = http.get(f"/v1/invoices/{validator.ids['invoice_id']}/verdict", headers=auth)
        assert last.status_code == 200 and local_port(last) == local_port(first)


def _signed(tenant: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(WEBHOOK_SECRETS[tenant], body)}


def _decision(contract_id: str, tenant: str) -> dict[str, Any]:
    return {"contract_id": contract_id, "tenant_id": tenant, "decision": "renew",
            "decided_at": datetime.now(UTC).isoformat()}


def test_renewal_webhook_binds_the_tenant_to_the_secret_that_signed(renewal: Service) -> None:
    c1, c2 = renewal.ids["t1"], renewal.ids["t2"]
    with renewal.client() as http:
        # Signed by tenant t1's CRM, claiming to be t2, about t2's contract: the body does not choose the tenant.
        body, headers = _signed("t1", _decision(c2, "t2"))
        forged = http.post("/v1/crm/decisions", content=body, headers=headers)
        assert forged.status_code == 403 and fields(forged) == ["tenant_id"], forged.text
        # Signed by t1 as t1, about t2's contract: as absent as an unknown one.
        body, headers = _signed("t1", _decision(c2, "t1"))
        foreign = http.post("/v1/crm/decisions", content=body, headers=headers)
        assert foreign.status_code == 404 and fields(foreign) == ["contract_id"], foreign.text
        body, headers = _signed("t1", _decision("C-unknown", "t1"))
        assert http.post("/v1/crm/decisions", content=body, headers=headers).status_code == 404
        for tenant, cid in (("t1", c1), ("t2", c2)):
            body, headers = _signed(tenant, _decision(cid, tenant))
            accepted = http.post("/v1/crm/decisions", content=body, headers=headers)
            assert accepted.status_code == 202, accepted.text
        body, headers = _signed("t1", _decision(c1, "t1"))
        assert http.post("/v1/crm/decisions", content=body,
                         headers=headers | {SIGNATURE_HEADER: sign("not-a-tenant-secret", body)}).status_code == 401


def test_renewal_webhook_deep_json_and_nul_answer_4xx_on_the_same_connection(renewal: Service) -> None:
    with renewal.client() as http:
        first = http.get("/healthz")
        nested = DEEP[:60_000]  # within the webhook's 64 KiB limit, far past the parser's depth
        deep = http.post("/v1/crm/decisions", content=nested,
                         headers={"Content-Type": "application/json",
                                  SIGNATURE_HEADER: sign(WEBHOOK_SECRETS["t1"], nested)})
        assert deep.status_code == 400 and fields(deep) == ["body"], deep.text
        body, headers = _signed("t1", _decision(renewal.ids["t1"], "t1") | {"note": NUL})
        nul = http.post("/v1/crm/decisions", content=body, headers=headers)
        assert nul.status_code == 422 and fields(nul) == ["note"], nul.text
        assert http.post("/v1/crm/decisions", content=b"[]").status_code == 401
        last = http.get("/healthz")
        assert last.status_code == 200 and local_port(last) == local_port(first)


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = [int(h.split(b":", 1)[1]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:")]
    return len(body) >= (length[0] if length else 0)


@pytest.mark.parametrize("service_name", ["registry", "validator", "renewal", "notifier"])
def test_a_50_mb_body_gets_413_without_being_read(service_name: str, request: pytest.FixtureRequest) -> None:
    import socket
    from urllib.parse import urlparse

    service: Service = request.getfixturevalue(service_name)
    path = {"registry": "/v1/contracts", "validator": "/v1/invoices", "renewal": "/v1/crm/decisions",
            "notifier": "/v1/alerts/x/ack"}[service_name]
    url = urlparse(service.url)
    for framing in ("content-length", "chunked"):
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            # No token and no signature: the limit is checked before either.
            length = f"Content-Length: {50 * 1024 * 1024}" if framing == "content-length" else \
                "Transfer-Encoding: chunked"
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{length}\r\n\r\n"
                         .encode())
            started = time.monotonic()
            chunk = b"x" * 65536
            sent = 0
            answer = b""
            sock.settimeout(0.05)
            while not _complete(answer) and time.monotonic() - started < 20:
                if sent < 4 * 1024 * 1024:  # never more than 4 MB of the 50
                    try:
                        data = chunk if framing == "content-length" else b"%x\r\n%s\r\n" % (len(chunk), chunk)
                        sock.sendall(data)
                        sent += len(chunk)
                    except OSError:
                        pass
                try:
                    answer += sock.recv(65536)
                except (TimeoutError, BlockingIOError):
                    continue
                except OSError:
                    break
            status = answer.split(b"\r\n", 1)[0]
            assert b" 413 " in status, (service_name, framing, answer[:300])
            assert b'"field":"body"' in answer
            assert sent <= 4 * 1024 * 1024
