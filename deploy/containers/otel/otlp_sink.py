"""OTLP/HTTP trace receiver that prints each span as a JSON line (ConsoleSpanExporter's field names)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _time(nanos: int) -> str:
    return datetime.fromtimestamp(nanos / 1e9, UTC).isoformat().replace("+00:00", "Z")


def spans(request: ExportTraceServiceRequest) -> list[dict[str, object]]:
    out = []
    for resource_spans in request.resource_spans:
        attributes = {a["key"]: next(iter(a["value"].values()), None)
                      for a in MessageToDict(resource_spans.resource).get("attributes", [])}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append({"name": span.name,
                            "context": {"trace_id": "0x" + span.trace_id.hex(), "span_id": "0x" + span.span_id.hex()},
                            "parent_id": "0x" + span.parent_span_id.hex() if span.parent_span_id else None,
                            "start_time": _time(span.start_time_unix_nano),
                            "end_time": _time(span.end_time_unix_nano),
                            "resource": {"attributes": attributes}})
    return out


class Traces(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception:  # noqa: BLE001 (a bad body is the client's problem: answer 400)
            self.send_error(400, "body is not an OTLP ExportTraceServiceRequest (protobuf)")
            return
        for span in spans(request):
            print(json.dumps(span), flush=True)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per span is the output; no access log


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    # PID 1 of a container gets no default signal handling: without this, SIGTERM would be ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    health = ThreadingHTTPServer(("0.0.0.0", 13133), Health)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    print("otlp sink: OTLP/HTTP on :4318, health on :13133", file=sys.stderr, flush=True)
    ThreadingHTTPServer(("0.0.0.0", 4318), Traces).serve_forever()


if __name__ == "__main__":
    main()
