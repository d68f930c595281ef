"""OpenTelemetry set-up and W3C trace context carried in Kafka headers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from .dlq import AnyHeaders, header_pairs

_configured = False


def setup_tracing(service_name: str, exporter: str = "none", endpoint: str | None = None,
                  span_exporter: SpanExporter | None = None, file: str | None = None) -> None:
    """Install a tracer provider once per process. `span_exporter` wins over `exporter`.

    exporter "console" writes one JSON span per line to stdout, or to `file` when given
    (how the cross-service trace test collects spans from several processes)."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    chosen: SpanExporter | None = span_exporter
    if chosen is None and exporter == "console":
        out = open(file, "a", buffering=1) if file else sys.stdout  # noqa: SIM115 - lives as long as the process
        chosen = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    elif chosen is None and exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )

        chosen = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    if chosen is not None:
        provider.add_span_processor(BatchSpanProcessor(chosen))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to put on an outgoing record."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from_headers(headers: AnyHeaders) -> context.Context:
    carrier = {k: v.decode("utf-8", "replace")
               for k, v in header_pairs(headers) if k in ("traceparent", "tracestate") and v is not None}
    return propagate.extract(carrier)


@contextmanager
def consume_span(service: str, topic: str, headers: AnyHeaders,
                 name: str | None = None) -> Iterator[trace.Span]:
    """A CONSUMER span continuing the trace the record's producer started."""
    parent = context_from_headers(headers)
    with tracer(service).start_as_current_span(
        name or f"{topic} process", context=parent, kind=trace.SpanKind.CONSUMER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
    ) as span:
        yield span


def setup_tracing_from_env(service_name: str) -> None:
    """What every service calls at start-up: MESH_OTEL_EXPORTER, MESH_OTEL_ENDPOINT, MESH_OTEL_FILE."""
    from .settings import ServiceSettings

    s = ServiceSettings()
    setup_tracing(service_name, s.otel_exporter, s.otel_endpoint, file=s.otel_file)
