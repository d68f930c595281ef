"""The fault-control endpoint: each outage kind over real loopback HTTP / SMTP, for a window, then normal again."""

from __future__ import annotations

import smtplib
import socket
from email.message import EmailMessage

import httpx
import pytest
from mesh_sim.crm import create_app as crm_app
from mesh_sim.erp import ErpSimSettings
from mesh_sim.erp import create_app as erp_app
from mesh_sim.faults import PortGate
from mesh_sim.recorder import Recorder
from mesh_sim.smtp import SmtpCatcher
from mesh_sim.smtp import create_app as smtp_app
from mesh_sim.testing import free_port, serve_in_thread

from mesh_testing import wait_for


def _release(url: str, timeout: float = 5.0) -> httpx.Response:
    return httpx.post(f"{url}/milestones/C-1/M-1/release", json={}, headers={"Authorization": "Bearer t"},
                      timeout=timeout)


@pytest.mark.parametrize(("mode", "status"), [("unavailable", 503), ("throttled", 429)])
def test_an_outage_window_fails_partner_calls_then_ends(mode: str, status: int) -> None:
    with serve_in_thread(erp_app(ErpSimSettings())) as url:
        fault = {"mode": mode, "seconds": 1.5, "retry_after": 7}
        assert httpx.post(f"{url}/chaos/fault", json=fault).status_code == 200
        failed = _release(url)
        assert failed.status_code == status
        if mode == "throttled":
            assert failed.headers["retry-after"] == "7"
        # The read-back route is never faulted: the drill can see what happened during the outage.
        injected = httpx.get(f"{url}/received", params={"kind": "fault-injected"}).json()
        assert injected[0]["problem"] == f"injected {mode}"
        assert wait_for(lambda: _release(url).status_code == 202, timeout=5, interval=0.1)


def test_hang_holds_the_call_past_the_client_timeout() -> None:
    with serve_in_thread(crm_app()) as url:
        httpx.post(f"{url}/chaos/fault", json={"mode": "hang", "seconds": 2})
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/services/oauth2/token", data={"grant_type": "client_credentials"}, timeout=0.5)
        assert httpx.get(f"{url}/chaos/fault").json()["active"]["mode"] == "hang"
        httpx.delete(f"{url}/chaos/fault")
        ok = httpx.post(f"{url}/services/oauth2/token", data={"grant_type": "client_credentials"}, timeout=5)
        assert ok.status_code == 200


def test_refuse_closes_the_gated_port_for_the_window_and_cuts_open_connections() -> None:
    inner = free_port()
    app = erp_app(ErpSimSettings())
    public = free_port()
    app.state.faults.gates.append(PortGate("127.0.0.1", public, inner).start())
    with serve_in_thread(app, port=inner):
        url = f"http://127.0.0.1:{public}"
        with httpx.Client(timeout=5) as client:  # a kept-alive connection, like a service's pool
            assert client.post(f"{url}/milestones/C-1/M-1/release", json={},
                               headers={"Authorization": "Bearer t"}).status_code == 202
            assert client.post(f"{url}/chaos/fault", json={"mode": "refuse", "seconds": 2}).status_code == 200
            assert wait_for(lambda: _refused(public), timeout=3, interval=0.05)
            with pytest.raises(httpx.TransportError):
                client.post(f"{url}/milestones/C-1/M-2/release", json={}, headers={"Authorization": "Bearer t"})
        assert wait_for(lambda: _try(url), timeout=6, interval=0.1)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _try(url: str) -> bool:
    try:
        return _release(url).status_code == 202
    except httpx.TransportError:
        return False


def test_refuse_without_the_gate_names_the_field() -> None:
    with serve_in_thread(erp_app(ErpSimSettings())) as url:
        resp = httpx.post(f"{url}/chaos/fault", json={"mode": "refuse", "seconds": 1})
        assert resp.status_code == 422
        assert resp.json()["detail"][0]["field"] == "mode"


def test_smtp_catcher_answers_421_during_an_outage_and_accepts_after() -> None:
    recorder = Recorder()
    app = smtp_app(recorder)
    port = free_port()
    catcher = SmtpCatcher(recorder, "127.0.0.1", port, faults=app.state.faults).start()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "drill"
    msg.set_content("x")
    try:
        with serve_in_thread(app) as url:
            httpx.post(f"{url}/chaos/fault", json={"mode": "unavailable", "seconds": 30})
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.send_message(msg)
            httpx.delete(f"{url}/chaos/fault")
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                smtp.send_message(msg)
            assert [m["rcpt_tos"] for m in httpx.get(f"{url}/messages").json()] == [["b@example.com"]]
    finally:
        catcher.stop()
