"""Test harness: one real PostgreSQL database and one Redis key space per run.

See tests/support/services.py for which servers are used. The database is created fresh,
migrated to head, and dropped at the end; every Redis key the run made is deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.asgi import create_app
from app.config import Environment, Settings
from app.kit import migrate
from app.kit.bus import CommandBus
from app.kit.embedded import EmbeddedServices
from app.kit.redis import Keys, create_redis
from app.services import Services
from tests.support import services as svc
from tests.support.processes import Platform, free_port


def pytest_report_header(config: pytest.Config) -> list[str]:
    return ["tradegraph: tests use real PostgreSQL and Redis (see tests/support/services.py)"]


@pytest.fixture(scope="session")
def embedded() -> Iterator[EmbeddedServices]:
    handle = EmbeddedServices()
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def postgres_server(embedded: EmbeddedServices) -> str:
    url, source = svc.find_postgres(embedded)
    print(f"\nPostgreSQL for this run: {source}")
    return url


@pytest.fixture(scope="session")
def redis_url(embedded: EmbeddedServices) -> str:
    url, source = svc.find_redis(embedded)
    print(f"\nRedis for this run: {source}")
    return url


@pytest.fixture(scope="session")
def run_id() -> str:
    return svc.run_id()


@pytest.fixture(scope="session")
def database_url(postgres_server: str, run_id: str) -> Iterator[str]:
    name = f"tradegraph_test_{run_id}"
    url = asyncio.run(svc.create_database(postgres_server, name))
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(svc.drop_database(postgres_server, name))


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str, run_id: str) -> Iterator[str]:
    prefix = f"tgtest:{run_id}:"
    yield prefix
    asyncio.run(svc.delete_prefix(redis_url, prefix))


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    return Settings(
        env=Environment.TEST,
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        jwt_secret="test-secret-" + "x" * 32,
        worker_metrics_port=free_port(),
        max_open_orders_per_user=400,
    )


@pytest.fixture
def scratch_database(postgres_server: str, run_id: str) -> Iterator[str]:
    """An empty database of its own, for tests that migrate up and down."""
    name = f"tradegraph_scratch_{run_id}"
    url = asyncio.run(svc.create_database(postgres_server, name))
    try:
        yield url
    finally:
        asyncio.run(svc.drop_database(postgres_server, name))
    assert make_url(url).database == name


@pytest.fixture(scope="session")
async def services(settings: Settings) -> AsyncIterator[Services]:
    handle = Services.create(settings)
    yield handle
    await handle.close()


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app in-process, lifespan included."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http,
    ):
        yield http


@pytest.fixture(scope="session")
def platform(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The real `tradegraph worker` and `tradegraph api` processes (end-to-end tests)."""
    handle = Platform(settings=settings, log_dir=Path(tmp_path_factory.mktemp("logs")))
    try:
        handle.start_worker()
        handle.start_api()
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
async def bus(settings: Settings, platform: Platform) -> AsyncIterator[CommandBus]:
    """A command-bus client, as an API process has, talking to the real worker."""
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    handle = CommandBus(redis, Keys(settings.redis_prefix))
    yield handle
    await handle.close()
    await redis.aclose()
