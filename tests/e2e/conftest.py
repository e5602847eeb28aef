"""One real `tradegraph run` for the tests of what a newcomer does first.

It gets a database of its own (empty: the supervisor migrates it, as `make run` does) and a
Redis prefix of its own, so its worker is never a second writer beside the session's
`platform` fixture. The worker's metrics port is held by another listener the whole time:
the platform must come up regardless.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from tests.support import services as svc
from tests.support.exchange import clear_books
from tests.support.processes import Supervisor, hold_port


@pytest.fixture(scope="session")
def taken_metrics_port() -> Iterator[int]:
    with hold_port() as port:
        yield port


@pytest.fixture(scope="session")
def supervisor(
    settings: Settings,
    postgres_server: str,
    run_id: str,
    taken_metrics_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Supervisor]:
    name = f"tradegraph_run_{run_id}"
    database_url = asyncio.run(svc.create_database(postgres_server, name))
    root = tmp_path_factory.mktemp("supervisor")
    handle = Supervisor(
        settings=settings.model_copy(
            update={
                "database_url": database_url,
                "redis_prefix": f"{settings.redis_prefix}run:",
            }
        ),
        data_dir=root / "data",
        log_path=root / "run.log",
    )
    try:
        handle.start(
            TRADEGRAPH_WORKER_METRICS_PORT=str(taken_metrics_port),
            TRADEGRAPH_API_WORKERS="2",  # as on a 2-core machine; test_api_workers checks it
        )
        yield handle
    finally:
        handle.stop()
        asyncio.run(svc.drop_database(postgres_server, name))


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the run's database, for asserting the rows written."""
    assert settings.database_url
    conn = await asyncpg.connect(plain_url(settings.database_url))
    yield conn
    await conn.close()


@pytest.fixture
async def empty_books_after(bus: CommandBus) -> AsyncIterator[None]:
    """Cancel what the test left resting on the shared markets (``usefixtures``)."""
    yield
    await clear_books(bus)
