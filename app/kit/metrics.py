"""Prometheus metrics shared by the API and the worker."""

from __future__ import annotations

import logging

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger(__name__)

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


def serve_metrics(
    host: str, port: int, *, setting: str = "TRADEGRAPH_WORKER_METRICS_PORT"
) -> int | None:
    """Serve this process's ``/metrics`` on ``host:port`` from a thread; return the port.

    Metrics are never a reason for a process not to run: if ``port`` is taken (another
    TradeGraph, another exporter on 9101), they move to a free port and one line says where;
    if even that fails, they are off and one line says so. ``setting`` is the variable that
    chooses the port, named in that line. Port 0 means off (returns None).
    """
    if not port:
        return None
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as taken:
        try:
            server, _ = start_http_server(0, addr=host)
        except OSError as exc:
            log.warning(
                "cannot serve /metrics on %s:%d (%s), so metrics are off (%s chooses the "
                "port, 0 turns metrics off)",
                host,
                port,
                exc.strerror or exc,
                setting,
            )
            return None
        actual: int = server.server_port
        log.warning(
            "cannot serve /metrics on %s:%d (%s); they are on http://%s:%d/metrics instead "
            "(%s chooses the port, 0 turns metrics off)",
            host,
            port,
            taken.strerror or taken,
            host,
            actual,
            setting,
        )
        return actual
    log.info("metrics on http://%s:%d/metrics", host, port)
    return port


WS_CONNECTIONS = Gauge("tradegraph_ws_connections", "WebSocket connections open in this process")
WS_REFUSED = Counter(
    "tradegraph_ws_refused_total",
    "WebSocket connections closed by a protection (ip, user, total, size, init, idle)",
    ["reason"],
)
