"""The HTTP app: the panels as JSON under /v1/portfolio (OpenAPI response models) and CSV, the live event
stream, the dashboard page, the local login, and /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from mesh_common.auth import Principal, TokenVerifier, issue_token
from mesh_common.http_guard import guard
from mesh_common.ops import ops_router

from ..bootstrap import AppConfig, Wiring, bootstrap
from ..domain.views import (
    BUCKETS,
    AlertView,
    CompletionCounts,
    CompletionView,
    Filters,
    InvoiceView,
    OpenAlert,
    PipelineRow,
    PipelineView,
    ScorecardView,
    SummaryFigure,
    SummaryView,
    TimelineItem,
    TimelineView,
    VendorRisk,
    VerdictCounts,
)
from ..service import NotFound, PortfolioService
from .web import SCOPE, Caller, Filtered, csv_response

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such contract for this tenant"}}


def create_app(config: AppConfig | None = None, wiring: Wiring | None = None) -> FastAPI:
    wiring = wiring or bootstrap(config)
    portfolio: PortfolioService = wiring.portfolio
    settings = wiring.config.portfolio

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if wiring.engine is not None:
            await asyncio.to_thread(wiring.start)
        try:
            yield
        finally:
            await asyncio.to_thread(wiring.stop)

    app = FastAPI(title="portfolio", version="1.0.0", lifespan=lifespan,
                  description="Portfolio dashboards built only from the mesh's public topics.")
    guard(app)
    app.state.token_verifier = TokenVerifier(wiring.config.auth)
    app.state.token_cookie = settings.token_cookie
    app.state.wiring = wiring
    app.include_router(ops_router({"database": wiring.database_ready} if wiring.engine is not None else {}))

    # ---- panel 1: renewal pipeline ----------------------------------------------------------------------

    @app.get("/v1/portfolio/pipeline", response_model=PipelineView, tags=["panels"])
    def pipeline(principal: Caller, f: Filtered,
                 as_of: Annotated[date | None, Query(description="the day the deadlines count from")] = None,
                 ) -> PipelineView:
        """Contracts whose notice deadline falls in 0-30 / 31-60 / 61-90 / 91-120 days, value per currency."""
        return portfolio.pipeline(principal.tenant, f, as_of)

    @app.get("/v1/portfolio/pipeline.csv", tags=["panels"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def pipeline_csv(principal: Caller, f: Filtered, as_of: date | None = None) -> Response:
        rows = portfolio.pipeline(principal.tenant, f, as_of).rows
        return csv_response(rows, "renewal-pipeline.csv", columns=list(PipelineRow.model_fields))

    # ---- panel 2: obligation completion --------------------------------------------------------------

    @app.get("/v1/portfolio/obligations", response_model=CompletionView, tags=["panels"])
    def obligations(principal: Caller, f: Filtered,
                    as_of: Annotated[datetime | None, Query(description="the moment 'overdue' is judged at")] = None,
                    ) -> CompletionView:
        """Completed on time / late / overdue / open per counterparty and contract type; what falls due soon."""
        return portfolio.completion(principal.tenant, f, _aware(as_of, "as_of"))

    @app.get("/v1/portfolio/obligations.csv", tags=["panels"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def obligations_csv(principal: Caller, f: Filtered, as_of: datetime | None = None) -> Response:
        view = portfolio.completion(principal.tenant, f, _aware(as_of, "as_of"))
        groups: list[tuple[str, CompletionCounts]] = [("all", view.total)]
        groups += [("counterparty", c) for c in view.by_counterparty]
        groups += [("contract_type", c) for c in view.by_contract_type]
        return csv_response([c.model_copy(update={"key": f"{g}:{c.key}"}) for g, c in groups],
                            "obligation-completion.csv", columns=list(CompletionCounts.model_fields))

    # ---- panels 4, 5 and 7: invoice compliance, alerts, executive summary -----------------------------

    @app.get("/v1/portfolio/invoices", response_model=InvoiceView, tags=["panels"])
    def invoices(principal: Caller, f: Filtered, as_of: datetime | None = None) -> InvoiceView:
        """Invoices by verdict per month and vendor, billed vs expected, overpayment prevented, the review queue."""
        return portfolio.invoices(principal.tenant, f, _aware(as_of, "as_of"))

    @app.get("/v1/portfolio/invoices.csv", tags=["panels"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def invoices_csv(principal: Caller, f: Filtered, as_of: datetime | None = None) -> Response:
        view = portfolio.invoices(principal.tenant, f, _aware(as_of, "as_of"))
        rows = [c.model_copy(update={"key": f"month:{c.key}"}) for c in view.by_month]
        rows += [c.model_copy(update={"key": f"vendor:{c.key}"}) for c in view.by_vendor]
        return csv_response(rows, "invoice-compliance.csv", columns=list(VerdictCounts.model_fields))

    @app.get("/v1/portfolio/alerts", response_model=AlertView, tags=["panels"])
    def alerts(principal: Caller, f: Filtered, as_of: datetime | None = None) -> AlertView:
        """Open red and yellow alerts by owner, time to acknowledge, escalations."""
        return portfolio.alerts(principal.tenant, f, _aware(as_of, "as_of"))

    @app.get("/v1/portfolio/alerts.csv", tags=["panels"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def alerts_csv(principal: Caller, f: Filtered, as_of: datetime | None = None) -> Response:
        rows = portfolio.alerts(principal.tenant, f, _aware(as_of, "as_of")).open
        return csv_response(rows, "open-alerts.csv", columns=list(OpenAlert.model_fields))

    @app.get("/v1/portfolio/vendors", response_model=ScorecardView, tags=["panels"])
    def vendors(principal: Caller, f: Filtered, as_of: datetime | None = None) -> ScorecardView:
        """Per counterparty: SLA attainment and credits, on-time rate, rejected invoices, open red alerts, and the
        risk level with the rules that hold as its reasons."""
        return portfolio.vendors(principal.tenant, f, _aware(as_of, "as_of"))

    @app.get("/v1/portfolio/vendors.csv", tags=["panels"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def vendors_csv(principal: Caller, f: Filtered, as_of: datetime | None = None) -> Response:
        rows = portfolio.vendors(principal.tenant, f, _aware(as_of, "as_of")).counterparties
        return csv_response(rows, "vendor-scorecards.csv", columns=list(VendorRisk.model_fields))

    @app.get("/v1/portfolio/summary", response_model=SummaryView, tags=["panels"])
    def summary(principal: Caller, f: Filtered, as_of: datetime | None = None) -> SummaryView:
        """The executive summary: the few figures of the other panels, each naming its panel."""
        return portfolio.summary(principal.tenant, f, _aware(as_of, "as_of"))

    @app.get("/v1/portfolio/summary.csv", tags=["panels"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def summary_csv(principal: Caller, f: Filtered, as_of: datetime | None = None) -> Response:
        rows = portfolio.summary(principal.tenant, f, _aware(as_of, "as_of")).figures
        return csv_response(rows, "summary.csv", columns=list(SummaryFigure.model_fields))

    # ---- panel 6: contract timeline ------------------------------------------------------------------

    def _timeline(tenant: str, contract_id: str) -> TimelineView:
        try:
            return portfolio.timeline(tenant, contract_id)
        except NotFound:
            raise HTTPException(404, detail=f"no contract {contract_id!r}") from None

    @app.get("/v1/portfolio/contracts/{contract_id}/timeline", response_model=TimelineView, tags=["panels"],
             responses=NOT_FOUND)
    def contract_timeline(principal: Caller, contract_id: str) -> TimelineView:
        """Every event about one contract from every topic, in order: the cross-system audit trail."""
        return _timeline(principal.tenant, contract_id)

    @app.get("/v1/portfolio/contracts/{contract_id}/timeline.csv", tags=["panels"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}, **NOT_FOUND})
    def contract_timeline_csv(principal: Caller, contract_id: str) -> Response:
        items = _timeline(principal.tenant, contract_id).items
        return csv_response(items, f"timeline-{contract_id}.csv", columns=list(TimelineItem.model_fields))

    # ---- live: the read model's version, pushed when it moves ----------------------------------------

    @app.get("/v1/portfolio/stream", tags=["live"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def stream(request: Request, _principal: Caller) -> StreamingResponse:
        """Server-Sent Events: `data: <version>` at once and whenever the read model changed (the page then fetches
        its panels again). A stream ends after PORTFOLIO_STREAM_SECONDS; EventSource reconnects by itself."""
        async def events() -> AsyncIterator[str]:
            last, idle = -1, 0.0
            ends = asyncio.get_running_loop().time() + settings.stream_seconds
            yield "retry: 500\n\n"  # reconnect half a second after the stream ends
            while not await request.is_disconnected() and asyncio.get_running_loop().time() < ends:
                version = await asyncio.to_thread(portfolio.version)
                if version != last:
                    last, idle = version, 0.0
                    yield f"data: {version}\n\n"
                elif idle >= 15:
                    idle = 0.0
                    yield ": keep-alive\n\n"  # proxies close streams that stay silent
                await asyncio.sleep(settings.live_poll_seconds)
                idle += settings.live_poll_seconds
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ---- the page ------------------------------------------------------------------------------------

    def _context(principal: Principal, f: Filters) -> dict[str, Any]:
        version = portfolio.version()  # read first: a change after it makes the stream send the page again
        d = portfolio.dashboard(principal.tenant, f)
        peak = max([b.contracts for b in d.pipeline.buckets] + [1])
        query = urlencode({k: v for k, v in f.model_dump().items() if v})
        return {"pipeline": d.pipeline, "completion": d.completion, "invoices": d.invoices, "alerts": d.alerts,
                "vendors": d.vendors, "summary": d.summary, "peak": peak, "buckets": BUCKETS, "filters": f,
                "query": query, "tenant": principal.tenant, "version": version}

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request, principal: Caller, f: Filtered) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "dashboard.html", _context(principal, f))

    @app.get("/dashboard/panels", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_panels(request: Request, principal: Caller, f: Filtered) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "panels.html", _context(principal, f))

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    # ---- local login: the page keeps the token in an HttpOnly cookie ---------------------------------

    def _login(token: str) -> RedirectResponse:
        try:
            app.state.token_verifier.verify(token)
        except Exception as exc:
            raise HTTPException(401, detail=f"invalid token: {exc}") from exc
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(settings.token_cookie, token, httponly=True, samesite="strict", max_age=8 * 3600)
        return response

    @app.get("/login", include_in_schema=False)
    def login(token: Annotated[str, Query(min_length=10, max_length=8000)]) -> RedirectResponse:
        """Open the page with a token of the mesh's JWT settings (the same the API takes as a bearer)."""
        return _login(token)

    @app.get("/login/dev", include_in_schema=False)
    def login_dev() -> RedirectResponse:
        """The demo stack's login: a token for the dev tenant, only when PORTFOLIO_DEV_LOGIN=true."""
        if not settings.dev_login:
            raise HTTPException(404, detail="dev login is off (PORTFOLIO_DEV_LOGIN)")
        return _login(issue_token(wiring.config.auth, subject="demo", tenant=settings.dev_tenant, scopes=[SCOPE]))

    return app


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, detail=[{"loc": ["query", name], "field": name,
                                          "msg": "give a time zone (e.g. Z or +01:00)", "type": "value_error"}])
    return value
