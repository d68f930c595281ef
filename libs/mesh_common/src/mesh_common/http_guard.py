"""What every HTTP service puts in front of its routes: a body limit, and 4xx answers that name the field.

`guard(app, max_body_bytes=...)` (call it before adding routes) installs:
- a request body limit, checked before any other work: a declared `Content-Length` over the limit
  is refused at once, a chunked body is read only up to the limit; 413 with `Connection: close`;
- text PostgreSQL can hold (no NUL character, no unpaired surrogate) in path and query parameters,
  422 naming the parameter; `text_violations()` does the same for a parsed body;
- validation errors as `{"detail": [{"loc", "field", "msg", "type", "input"}]}` with `input`
  cut to `MAX_ECHO_CHARS`, so an error never echoes an unbounded body;
- JSON nested too deeply for the parser: 400 naming `body`, not 500;
- any other unhandled error: a 500 answered here, so the server keeps the keep-alive connection
  (an exception escaping to uvicorn makes it drop the connection under the client's next request).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_ECHO_CHARS = 200
_SOURCES = ("body", "query", "path", "header", "cookie")


def problem(status: int, field: str, msg: str, kind: str = "invalid") -> JSONResponse:
    """The error shape of every service: a list of problems, each naming its field."""
    return JSONResponse({"detail": [{"field": field, "msg": msg, "problem": msg, "type": kind}]},
                        status_code=status)


def truncate(value: Any, limit: int = MAX_ECHO_CHARS) -> Any:
    """A short stand-in for an input echoed in an error: small scalars as they are, the rest cut."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
    return printable(text)


def printable(text: str) -> str:
    """`text` as it can be sent in UTF-8: an unpaired surrogate from the input is escaped, not a crash."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def field_of(loc: Sequence[Any]) -> str:
    """Dotted field name from a pydantic/FastAPI location: ("body", "terms", "rate_card", 0) -> terms.rate_card[0]."""
    parts = list(loc[1:] if loc and loc[0] in _SOURCES and len(loc) > 1 else loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def text_problem(text: str) -> str | None:
    """Why PostgreSQL (and UTF-8 on the wire) cannot hold `text`, or None."""
    if "\x00" in text:
        return "must not contain a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain an unpaired surrogate (not UTF-8)"
    return None


def bad_text(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, problem) of every string or mapping key that cannot be stored as text."""
    if isinstance(value, str):
        if problem_ := text_problem(value):
            yield path or "body", problem_
    elif isinstance(value, Mapping):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and (problem_ := text_problem(k)):
                yield printable(sub), problem_
            else:
                yield from bad_text(v, sub)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from bad_text(v, f"{path}[{i}]")


def text_violations(value: Any, loc_prefix: str = "body") -> list[dict[str, Any]]:
    """Problems for every string of a parsed body (or a dumped model) that cannot be stored as text."""
    return [{"loc": [loc_prefix, *p.split(".")], "field": p, "msg": why, "problem": why, "type": "bad_text"}
            for p, why in bad_text(value)]


async def _reject_bad_text_params(request: Request) -> None:
    bad = [("path", k, text_problem(v)) for k, v in request.path_params.items() if isinstance(v, str)]
    bad += [("query", k, text_problem(k) or text_problem(v)) for k, v in request.query_params.multi_items()]
    if problems := [(src, name, why) for src, name, why in bad if why]:
        raise RequestValidationError([{"loc": [src, name.replace("\x00", "\\x00")], "type": "bad_text", "msg": why,
                                       "input": None} for src, name, why in problems])


class BodyLimit:
    """ASGI middleware: the whole body, at most `limit` bytes, is read before the app sees the request."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, send)  # the rest is never read; the connection closes
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        response = problem(413, "body", f"the request body is larger than {self.limit} bytes", "too_large")
        response.headers["Connection"] = "close"
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class AnswerErrors:
    """ASGI middleware: an exception no handler took becomes a 500 answered here (or a 400 for JSON nested
    too deeply), so uvicorn never sees it and keeps the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:
                raise
            if isinstance(exc, RecursionError):
                response = problem(400, "body", "nested too deeply", "too_deep")
            else:
                log.exception("%s %s failed", scope.get("method"), scope.get("path"))
                response = problem(500, "", f"internal error ({type(exc).__name__})", "internal")
            await response(scope, receive, send)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = []
    for e in exc.errors():
        loc = [printable(p) if isinstance(p, str) else p for p in e.get("loc", ())]
        item = {"loc": loc, "field": field_of(loc), "msg": printable(str(e.get("msg", ""))),
                "type": e.get("type", "value_error")}
        item["problem"] = item["msg"]
        if "input" in e:
            item["input"] = truncate(e["input"])
        detail.append(item)
    return JSONResponse({"detail": detail}, status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        return problem(400, "body", "nested too deeply", "too_deep")
    if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not parse the body
        return problem(400, "body", f"could not be parsed: {truncate(str(exc.__cause__))}", "parse_error")
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def guard(app: FastAPI, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """Install the guard on a new app; routes added afterwards get the parameter check."""
    if app.router.routes and any(getattr(r, "dependant", None) for r in app.router.routes):
        raise RuntimeError("guard() must be installed before the app's routes are added")
    app.router.dependencies.append(Depends(_reject_bad_text_params))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(AnswerErrors)
    app.add_middleware(BodyLimit, limit=max_body_bytes)  # added last: outermost, before any other work
    app.state.max_body_bytes = max_body_bytes
    return app


def body_doc(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    """`openapi_extra` documenting a body a route reads itself (raw bytes, e.g. to check a signature)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline({**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {media_type: {"schema": inline(schema)}}}}
