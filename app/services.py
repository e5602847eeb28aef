"""The process-wide resources (pools, clients) and the services built on them."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.kit.db import create_engine, create_sessionmaker
from app.kit.redis import Keys, create_redis
from app.markets.service import MarketService


@dataclass
class Services:
    settings: Settings
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    markets: MarketService

    @classmethod
    def create(cls, settings: Settings) -> Services:
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("DATABASE_URL and REDIS_URL must be set for the API process")
        db = create_engine(settings.database_url, pool_size=settings.db_pool_size)
        sessions = create_sessionmaker(db)
        return cls(
            settings=settings,
            db=db,
            sessions=sessions,
            redis=create_redis(settings.redis_url),
            keys=Keys(settings.redis_prefix),
            markets=MarketService(sessions),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.db.dispose()
