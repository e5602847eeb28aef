from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.asgi import create_app
from app.config import Settings
from tests.support.processes import Platform, free_port


async def test_healthz_answers_while_the_process_is_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok")


async def test_readyz_checks_postgres_redis_and_the_worker(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "checks": {"postgres": "ok", "redis": "ok", "worker": "ok"},
    }


async def test_readyz_is_503_without_a_worker_heartbeat(settings: Settings) -> None:
    alone = settings.model_copy(update={"redis_prefix": settings.redis_prefix + "alone:"})
    async for http in _client_for(alone):
        response = await http.get("/readyz")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["worker"] == "down: WorkerDown"
        assert (checks["postgres"], checks["redis"]) == ("ok", "ok")


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'tradegraph_http_requests_total{method="GET",path="/healthz",status="200"}' in (
        response.text
    )
    assert "tradegraph_http_request_seconds_bucket" in response.text


@pytest.fixture
def dead_url() -> str:
    """A port on which nothing listens."""
    return f"127.0.0.1:{free_port()}"


async def _client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


async def test_readyz_is_503_when_redis_is_down(settings: Settings, dead_url: str) -> None:
    broken = settings.model_copy(update={"redis_url": f"redis://{dead_url}/0"})
    async for http in _client_for(broken):
        response = await http.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["ready"] is False
        assert body["checks"]["postgres"] == "ok"
        assert body["checks"]["redis"].startswith("down")


async def test_readyz_is_503_when_postgres_is_down(settings: Settings, dead_url: str) -> None:
    broken = settings.model_copy(
        update={"database_url": f"postgresql://postgres@{dead_url}/postgres"}
    )
    async for http in _client_for(broken):
        response = await http.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["postgres"].startswith("down")
        assert response.json()["checks"]["redis"] == "ok"
