"""Prometheus metrics shared by the API and the worker.

One API process keeps its metrics in memory. Several (``tradegraph api --workers N``) share
one port, so a scrape reaches any one of them: they then use prometheus_client's
multi-process mode, each writing its values to files in one directory
(``PROMETHEUS_MULTIPROC_DIR``, set by ``tradegraph api`` before the processes start) and
``/metrics`` of any process adding up all of them. Counters and histograms are summed;
``tradegraph_ws_connections`` is the live processes' sum;
``tradegraph_api_process_graphql_requests`` has one series per process (label ``pid``),
which shows how the load is spread.
"""

from __future__ import annotations

import logging
import os
from functools import cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
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


API_PROCESS_GRAPHQL_REQUESTS = Gauge(
    "tradegraph_api_process_graphql_requests",
    "HTTP requests to /graphql served by this API process (one series per process, label "
    "pid, when several serve one port)",
    multiprocess_mode="liveall",
)
GRAPHQL_CACHE_HITS = Counter(
    "tradegraph_graphql_cache_hits",
    "GraphQL documents taken from a cache (parse: the parsed document; validate: its "
    "validation result)",
    ["cache"],
)
GRAPHQL_CACHE_MISSES = Counter(
    "tradegraph_graphql_cache_misses",
    "GraphQL documents parsed or validated because the cache did not hold them",
    ["cache"],
)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR))


@cache
def _registry() -> CollectorRegistry | None:
    """The registry to render: the processes' shared files in multi-process mode."""
    if not is_multiprocess():
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def render_metrics() -> bytes:
    registry = _registry()
    return generate_latest() if registry is None else generate_latest(registry)


def process_exiting() -> None:
    """Drop this process's live gauges from the shared files (multi-process mode only)."""
    if is_multiprocess():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


async def metrics_endpoint(request: Request) -> Response:
    return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)


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


WS_CONNECTIONS = Gauge(
    "tradegraph_ws_connections",
    "WebSocket connections open (in all the API processes of this port)",
    multiprocess_mode="livesum",
)
WS_REFUSED = Counter(
    "tradegraph_ws_refused_total",
    "WebSocket connections closed by a protection (ip, user, total, size, init, idle, slow)",
    ["reason"],
)
SUBSCRIPTION_OVERFLOWS = Counter(
    "tradegraph_subscription_overflows_total",
    "Subscribers that fell subscription_queue_size messages behind: resync (the book: its "
    "queue dropped for a fresh snapshot) or close (myOrders/myFills: sent what was queued, "
    "then closed 4480)",
    ["outcome"],
)
