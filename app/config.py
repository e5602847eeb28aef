"""One typed settings object, read from the environment.

``DATABASE_URL`` and ``REDIS_URL`` keep their conventional names; everything else is
``TRADEGRAPH_*``. Left unset, the two URLs mean "start the embedded PostgreSQL and Redis"
(see :mod:`app.kit.embedded`).
"""

from __future__ import annotations

import os
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "tradegraph-development-secret-change-me"


def default_data_dir() -> Path:
    """``.tradegraph`` in the project folder (the source checkout this package runs from),
    else in the home folder: never the current directory, so a command run from any folder
    finds the same embedded servers and the running platform's endpoints."""
    project = Path(__file__).resolve().parents[1]
    return (project if (project / "pyproject.toml").is_file() else Path.home()) / ".tradegraph"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class InsecureSettingsError(RuntimeError):
    """Raised when production is started with a development default."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEGRAPH_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "TRADEGRAPH_DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "TRADEGRAPH_REDIS_URL")
    )
    # Prepended to every Redis key and channel; empty in production so keys are the seed's
    # (`orderbook:{symbol}:bids`), set per run by the tests to keep runs apart.
    redis_prefix: str = ""
    jwt_secret: str = DEFAULT_JWT_SECRET
    data_dir: Path = Field(default_factory=default_data_dir)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # API processes `tradegraph api` (and so `tradegraph run`) serves with, on one socket:
    # one per core this machine lets it use, by default.
    api_workers: int = Field(default_factory=available_cores, ge=1, le=256)
    db_pool_size: int = 10
    log_level: str = "INFO"

    # Access tokens and the Redis session behind each (`session:{userId}`) live this long.
    access_token_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # How long an API process may reuse a session check without asking Redis again; a
    # logout or newer login is published, so every process forgets it as it hears (see
    # app/accounts/sessions.py). 0: ask Redis on every operation.
    session_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    # Requests whose body is larger are refused with 413 before anything reads them.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Rate limits, per minute, per root field of an operation (`ratelimit:{who}:{field}`).
    # Fields named in `rate_limits_per_ip` are always counted per client IP; others per user
    # when the caller is logged in (`rate_limits_per_user`, else `rate_limit_per_user`) and
    # per client IP otherwise (`rate_limit_per_ip`). Dicts are read from JSON in the env.
    rate_limit_enabled: bool = True
    rate_limit_per_user: int = Field(default=600, ge=1)
    rate_limit_per_ip: int = Field(default=300, ge=1)
    rate_limits_per_user: dict[str, int] = Field(
        default_factory=lambda: {
            "placeOrder": 1200,
            "amendOrder": 1200,
            "cancelOrder": 1200,
            "cancelAllOrders": 120,
        }
    )
    rate_limits_per_ip: dict[str, int] = Field(
        default_factory=lambda: {"login": 20, "register": 10}
    )
    # Pre-trade risk: resting orders one account may have open at once (RISK_REJECTED past it).
    max_open_orders_per_user: int = Field(default=1000, ge=1)
    # The matching worker's own /metrics (0 turns it off).
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9101
    # Messages a slow subscriber may have waiting before it is resynced (book) or sent what
    # was waiting and closed with 4480 (myOrders, myFills: they never skip a message).
    subscription_queue_size: int = Field(default=1000, ge=10)
    # How long an API request waits for the worker's reply before a timeout error.
    command_timeout: float = 5.0
    # The fee job (`tradegraph jobs`): the UTC time of day it recomputes the volume tiers.
    fee_recompute_at: str = Field(default="00:05", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")

    # Who may say who the client is: X-Forwarded-For / -Proto are believed only from these
    # addresses or networks (comma-separated IPs / CIDRs; "*" trusts everyone). The client
    # is the right-most hop of X-Forwarded-For that is not one of them.
    trusted_proxies: str = "127.0.0.1"
    # WebSockets: concurrent connections per client IP, per logged-in user and in total, per
    # API process; past a cap the connection is accepted and closed at once (4429 for IP and
    # user, 1013 for the process total). A connection must send connection_init within
    # `ws_init_timeout_seconds` and is closed when it has had no running operation for
    # `ws_idle_timeout_seconds` (4408 both). Messages larger than `max_body_bytes` close
    # the connection with 1009.
    ws_max_connections_per_ip: int = Field(default=50, ge=1)
    ws_max_connections_per_user: int = Field(default=20, ge=1)
    ws_max_connections: int = Field(default=5000, ge=1)
    ws_init_timeout_seconds: float = Field(default=10.0, gt=0)
    ws_idle_timeout_seconds: float = Field(default=60.0, gt=0)
    # permessage-deflate on WebSockets: off by default, because it costs CPU on every
    # message to every subscriber (a book update is compressed once per connection) and
    # book updates are small.
    ws_compression: bool = False
    # Failed logins per account (email, known or not) in a window; past it every login for
    # that email is refused with LOGIN_LOCKED until the window ends, the right password too.
    login_failures_per_account: int = Field(default=10, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # Failed logins for emails no account has are LOGIN risk events (user NULL) at most once
    # per client IP per failure window, and at most this many a minute in all (0: never).
    login_unknown_email_events_per_minute: int = Field(default=60, ge=0)
    # /metrics in production: loopback callers, or `Authorization: Bearer <metrics_token>`
    # when one is set; anyone else gets 404. Outside production it is open.
    metrics_token: str | None = None

    # The manipulation detector (`tradegraph risk-monitor`, README "Manipulation detection").
    # The worker appends one entry per committed batch to the activity stream, trimmed to
    # about this many entries (enough to rebuild the longest window after a restart).
    activity_stream_maxlen: int = Field(default=200_000, ge=1000)
    # wash_trading: self-trade prevention fired this many times for one user in the window.
    risk_wash_trading_count: int = Field(default=5, ge=2)
    risk_wash_trading_window_seconds: int = Field(default=3600, ge=1)
    # wash_pair: two accounts with at least this many trades in the window, this share of
    # which (of either account's trades) are with each other.
    risk_wash_pair_min_trades: int = Field(default=20, ge=2)
    risk_wash_pair_share_percent: int = Field(default=80, ge=1, le=100)
    risk_wash_pair_window_seconds: int = Field(default=3600, ge=1)
    # spoofing: an order at least `size_multiple` x the account's and the market's median
    # order size, cancelled within `cancel_seconds` with nothing filled, `count` times.
    risk_spoofing_size_multiple: int = Field(default=10, ge=2)
    risk_spoofing_cancel_seconds: float = Field(default=5.0, gt=0)
    risk_spoofing_count: int = Field(default=3, ge=1)
    risk_spoofing_window_seconds: int = Field(default=600, ge=1)
    risk_spoofing_min_history: int = Field(default=10, ge=1)
    # layering: at least `orders` orders resting on one side of one market, cancelled
    # within `cancel_seconds` of each other with nothing filled.
    risk_layering_orders: int = Field(default=5, ge=2)
    risk_layering_cancel_seconds: float = Field(default=1.0, gt=0)
    # cancel_to_fill: at least `min_cancels` cancels in the window, a cancels/fills ratio of
    # at least `ratio` (fills counted as trades the user was on).
    risk_cancel_to_fill_min_cancels: int = Field(default=500, ge=1)
    risk_cancel_to_fill_ratio: int = Field(default=200, ge=1)
    risk_cancel_to_fill_window_seconds: int = Field(default=3600, ge=1)
    # order_burst: more than `orders` orders accepted for one user within `window` seconds.
    risk_order_burst_orders: int = Field(default=50, ge=2)
    risk_order_burst_window_seconds: float = Field(default=1.0, gt=0)
    # large_withdrawal: one withdrawal of at least this much of an asset (JSON in the env).
    risk_large_withdrawal: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "BTC": Decimal("10"),
            "ETH": Decimal("100"),
            "USDT": Decimal("250000"),
        }
    )

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            if self.jwt_secret == DEFAULT_JWT_SECRET or len(self.jwt_secret) < 32:
                raise InsecureSettingsError(
                    "TRADEGRAPH_ENV=production needs TRADEGRAPH_JWT_SECRET set to a secret "
                    "of at least 32 characters (the development default is refused)"
                )
            if not self.database_url or not self.redis_url:
                raise InsecureSettingsError(
                    "TRADEGRAPH_ENV=production needs DATABASE_URL and REDIS_URL; "
                    "the embedded servers are for development only"
                )
        return self

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
