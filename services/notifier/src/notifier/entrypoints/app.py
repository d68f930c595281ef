"""HTTP: acknowledgements (JWT or signed link), per-owner calendar feeds, health and metrics."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Response
from fastapi.responses import HTMLResponse

from mesh_common.auth import AuthSettings, Principal, TokenVerifier, require_scope
from mesh_common.http_guard import guard
from mesh_common.ops import ReadinessCheck, ops_router

from ..domain.calendar import build_calendar
from ..domain.links import check_ack_signature
from ..service import Notifier

MAX_BODY_BYTES = 64 * 1024  # no route takes a body; anything bigger is refused unread
AlertId = Annotated[str, Path(min_length=1, max_length=200)]


def create_app(notifier: Notifier, *, auth: AuthSettings | None = None,
               checks: dict[str, ReadinessCheck] | None = None) -> FastAPI:
    app = FastAPI(title="contract mesh notifier", version="1")
    guard(app, max_body_bytes=MAX_BODY_BYTES)
    app.state.token_verifier = TokenVerifier(auth or AuthSettings())
    app.include_router(ops_router(checks))

    def ack_body(alert_id: str, by: str) -> dict[str, Any]:
        stored = notifier.acknowledge(alert_id, by)
        if stored is None:
            raise HTTPException(404, detail=f"alert_id: no alert {alert_id!r}")
        return {"alert_id": alert_id, "acknowledged_at": stored.acked_at.isoformat() if stored.acked_at else None,
                "acknowledged_by": stored.acked_by}

    def check_tenant(alert_id: str, principal: Principal) -> None:
        # The tenant claim scopes data access; another tenant's alert is as good as absent.
        stored = notifier.store.get_alert(alert_id)
        if stored is None or stored.alert.tenant_id != principal.tenant:
            raise HTTPException(404, detail=f"alert_id: no alert {alert_id!r}")

    @app.post("/v1/alerts/{alert_id}/ack")
    def ack(alert_id: AlertId,
            principal: Annotated[Principal, Depends(require_scope("alerts:ack"))]) -> dict[str, Any]:
        check_tenant(alert_id, principal)
        return ack_body(alert_id, principal.subject)

    @app.get("/v1/alerts/{alert_id}/ack", response_class=HTMLResponse)
    def ack_link(alert_id: AlertId, exp: Annotated[int, Query(description="link expiry, unix seconds")],
                 sig: Annotated[str, Query(min_length=64, max_length=64, pattern="^[0-9a-f]+$")]) -> str:
        now = int(notifier.clock.now().timestamp())
        problem = check_ack_signature(notifier.links.ack_secret, alert_id, exp, sig, now)
        if problem:
            raise HTTPException(403, detail=f"sig: {problem}")
        body = ack_body(alert_id, "signed-link")
        return (f"<html><body><p>Alert {body['alert_id']} acknowledged at {body['acknowledged_at']}.</p>"
                "</body></html>")

    @app.get("/v1/alerts/{alert_id}")
    def get_alert(alert_id: AlertId,
                  principal: Annotated[Principal, Depends(require_scope("alerts:read"))]) -> dict[str, Any]:
        stored = notifier.store.get_alert(alert_id)
        if stored is None or stored.alert.tenant_id != principal.tenant:
            raise HTTPException(404, detail=f"alert_id: no alert {alert_id!r}")
        thread = notifier.store.get_thread(stored.alert.dedup_key)
        return {"alert_id": alert_id, "tier": stored.tier.value, "rule": stored.rule, "outcome": stored.outcome.value,
                "thread_root": stored.thread_root, "suppressed_in_thread": thread.suppressed if thread else 0,
                "acknowledged_at": stored.acked_at.isoformat() if stored.acked_at else None,
                "deliveries": [{k: str(v) for k, v in d.items() if k in ("channel", "recipient", "step", "status")}
                               for d in notifier.store.deliveries(alert_id)]}

    @app.get("/v1/calendar/{token}.ics")
    def calendar(token: Annotated[str, Path(min_length=16, max_length=64, pattern="^[0-9a-f]+$")]) -> Response:
        now = notifier.clock.now()
        owner, entries = notifier.store.calendar(token, since=now - timedelta(days=1))
        if owner is None:
            raise HTTPException(404, detail="token: no calendar feed with this token")
        return Response(build_calendar(owner, entries, now), media_type="text/calendar; charset=utf-8",
                        headers={"Cache-Control": "private, max-age=300"})

    return app
