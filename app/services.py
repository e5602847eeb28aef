"""The process-wide resources (pools, clients) and the services built on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.accounts.logins import LoginMonitor
from app.accounts.service import AccountService
from app.accounts.sessions import LoginThrottle, SessionStore
from app.balances.service import BalanceService
from app.config import Settings
from app.fees.service import FeeService
from app.kit.bus import CommandBus
from app.kit.db import create_engine, create_sessionmaker
from app.kit.pubsub import BoundedBroadcast, ResilientRedisBackend
from app.kit.ratelimit import RateLimiter
from app.kit.redis import Keys, create_redis
from app.markets.cache import MarketCache
from app.markets.candles import CandleService
from app.markets.feed import BookFeeds
from app.markets.service import MarketService
from app.markets.tickers import TickerFeed, TickerService
from app.orders.service import TradingService
from app.risk.controls import RiskControls
from app.risk.service import RiskService


@dataclass
class Services:
    settings: Settings
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    bus: CommandBus
    session_store: SessionStore
    markets: MarketService
    accounts: AccountService
    risk: RiskService
    risk_controls: RiskControls
    fees: FeeService
    rate_limiter: RateLimiter
    trading: TradingService
    balances: BalanceService
    broadcast: BoundedBroadcast
    books: BookFeeds
    tickers: TickerService
    ticker_feed: TickerFeed
    candles: CandleService

    @classmethod
    def create(cls, settings: Settings) -> Services:
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("DATABASE_URL and REDIS_URL must be set for the API process")
        db = create_engine(settings.database_url, pool_size=settings.db_pool_size)
        sessions = create_sessionmaker(db)
        redis = create_redis(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        bus = CommandBus(redis, keys)  # starts listening for replies on its first command
        session_store = SessionStore(
            redis,
            keys,
            settings.access_token_ttl_seconds,
            cache_seconds=settings.session_cache_seconds,
        )
        redis_url = settings.redis_url
        cache = MarketCache(
            sessions,
            lambda: Redis.from_url(redis_url, client_name=keys.market_cache_client_name()),
            keys.markets_channel(),
        )
        markets = MarketService(
            sessions, redis, keys, bus, timeout=settings.command_timeout, cache=cache
        )
        risk = RiskService(sessions, redis, keys)
        broadcast = BoundedBroadcast(
            ResilientRedisBackend(
                lambda: Redis.from_url(redis_url, client_name=keys.pubsub_client_name())
            ),
            max_queue=settings.subscription_queue_size,
        )
        tickers = TickerService(sessions, redis, keys)
        login_monitor = LoginMonitor(
            sessions,
            risk,
            redis,
            keys,
            window_seconds=settings.login_failure_window_seconds,
            unknown_email_events_per_minute=settings.login_unknown_email_events_per_minute,
        )
        broadcast = BoundedBroadcast(
            ResilientRedisBackend(
                lambda: Redis.from_url(redis_url, client_name=keys.pubsub_client_name())
            ),
            max_queue=settings.subscription_queue_size,
        )
        return cls(
            settings=settings,
            db=db,
            sessions=sessions,
            redis=redis,
            keys=keys,
            bus=bus,
            markets=markets,
            session_store=session_store,
            accounts=AccountService(
                sessions,
                session_store,
                jwt_secret=settings.jwt_secret,
                token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
                bus=bus,
                command_timeout=settings.command_timeout,
                login_throttle=LoginThrottle(
                    redis,
                    keys,
                    limit=settings.login_failures_per_account,
                    window_seconds=settings.login_failure_window_seconds,
                ),
                login_monitor=login_monitor,
            ),
            risk=risk,
            risk_controls=RiskControls(sessions, bus, timeout=settings.command_timeout),
            fees=FeeService(sessions),
            rate_limiter=RateLimiter(redis, keys, settings),
            trading=TradingService(sessions, bus, markets, timeout=settings.command_timeout),
            balances=BalanceService(sessions, bus, timeout=settings.command_timeout),
            broadcast=broadcast,
            books=BookFeeds(broadcast, keys.book_channel, markets.whole_book),
            tickers=tickers,
            ticker_feed=TickerFeed(tickers, broadcast, keys),
            candles=CandleService(sessions, keys),
        )

    async def start(self) -> None:
        await self.broadcast.connect()
        if self.markets.cache is not None:
            await self.markets.cache.start()

    async def close(self) -> None:
        if self.accounts.monitor is not None:
            await self.accounts.monitor.drain()  # the last logins' risk events
        if self.markets.cache is not None:
            await self.markets.cache.close()
        await self.books.close()
        await self.ticker_feed.close()
        await self.broadcast.disconnect()
        await self.bus.close()
        await self.session_store.stop()
        await self.redis.aclose()
        await self.db.dispose()
