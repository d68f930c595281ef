"""mesh_common.http_guard on a small app served by real uvicorn: an unhandled error is a 500 that keeps
the keep-alive connection, and the body limit answers before the route runs."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request

from mesh_common.http_guard import guard
from mesh_testing.http import serve

from .test_bad_input import local_port


def _app(calls: list[str]) -> FastAPI:
    app = FastAPI()
    guard(app, max_body_bytes=1024)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        calls.append("echo")
        return {"size": len(await request.body())}

    @app.get("/items/{item_id}")
    def item(item_id: str, q: str = "") -> dict[str, str]:
        return {"item_id": item_id, "q": q}

    return app


def test_a_500_keeps_the_connection_and_the_limit_is_checked_before_the_route() -> None:
    calls: list[str] = []
    with serve(_app(calls)) as url, httpx.Client(base_url=url) as http:
        first = http.get("/items/a")
        boom = http.get("/boom")
        assert boom.status_code == 500 and boom.json()["detail"][0]["type"] == "internal"
        assert "a bug" not in boom.text  # no internals in the answer
        after = http.get("/items/b", params={"q": "x"})
        assert after.json() == {"item_id": "b", "q": "x"}
        assert local_port(after) == local_port(first)

        assert http.post("/echo", content=b"x" * 1024).json() == {"size": 1024}
        assert calls == ["echo"]
        over = http.post("/echo", content=b"x" * 1025)
        assert over.status_code == 413 and over.json()["detail"][0]["field"] == "body"
        assert calls == ["echo"]  # the route never ran

        nul = http.get("/items/a%00b", params={"q": "c\x00"})
        assert nul.status_code == 422
        assert {d["field"] for d in nul.json()["detail"]} == {"item_id", "q"}
