from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from app.asgi import create_app
from app.config import Settings


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The ASGI app in-process with its lifespan running; make clients with `asgi_client`."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
