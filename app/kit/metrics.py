"""Prometheus metrics shared by the API and the worker."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

HTTP_REQUESTS = Counter(
    "tradegraph_http_requests_total", "HTTP requests served", ["method", "path", "status"]
)
HTTP_LATENCY = Histogram(
    "tradegraph_http_request_seconds",
    "Time to serve an HTTP request",
    ["path"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


WS_CONNECTIONS = Gauge("tradegraph_ws_connections", "WebSocket connections open in this process")
WS_REFUSED = Counter(
    "tradegraph_ws_refused_total",
    "WebSocket connections closed by a protection (ip, user, total, size, init, idle)",
    ["reason"],
)
