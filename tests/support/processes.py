"""Start the real `tradegraph` processes for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from app.config import Settings
from app.kit.redis import Keys

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGRAPH_")}
    assert settings.database_url and settings.redis_url
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        TRADEGRAPH_ENV=settings.env.value,
        TRADEGRAPH_REDIS_PREFIX=settings.redis_prefix,
        TRADEGRAPH_JWT_SECRET=settings.jwt_secret,
        TRADEGRAPH_LOG_LEVEL=os.environ.get("TRADEGRAPH_TEST_PROCESS_LOG_LEVEL", "WARNING"),
        TRADEGRAPH_WORKER_METRICS_PORT=str(settings.worker_metrics_port),
        TRADEGRAPH_MAX_OPEN_ORDERS_PER_USER=str(settings.max_open_orders_per_user),
    )
    return env


@dataclass
class Platform:
    """The real processes of one test session: the API (and, later, the worker)."""

    settings: Settings
    log_dir: Path
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Extra environment for every process started (settings the tests tighten).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env={**process_env(self.settings), **self.env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def start_worker(self, timeout: float = 60.0) -> float:
        """Start the matching worker; return the seconds until its heartbeat appeared."""
        assert self.settings.redis_url
        heartbeat = Keys(self.settings.redis_prefix).worker_heartbeat()
        redis = Redis.from_url(self.settings.redis_url)
        try:
            redis.delete(heartbeat)
            started = time.monotonic()
            proc = self.start("worker", "worker")
            while not redis.exists(heartbeat):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{self.log('worker')}")
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"no worker heartbeat in {timeout}s")
                time.sleep(0.02)
            return time.monotonic() - started
        finally:
            redis.close()

    def kill(self, name: str) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def start_api(self) -> None:
        self.start("api", "api", "--host", "127.0.0.1", "--port", str(self.port))
        self.wait_http("/healthz")

    def start_api_on(self, name: str, port: int, timeout: float = 30.0) -> None:
        """One more API process, on ``port`` (e.g. a second replica behind a proxy)."""
        self.start(name, "api", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{self.log(name)}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{name} on :{port} did not answer in {timeout}s")

    def wait_http(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited early:\n{self.log(name)}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url}{path} did not answer in {timeout}s")

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str | None = None, timeout: float = 15.0) -> None:
        names = [name] if name else list(self.procs)
        for each in names:
            proc = self.procs.pop(each)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


async def submit_while_stopped(
    platform: Platform, redis: AsyncRedis, submissions: Iterable[Awaitable[T]]
) -> list[asyncio.Future[T]]:
    """Stop the worker, submit ``submissions``, and return their pending replies once every
    command is on the stream. The worker is left stopped: the caller starts it."""
    platform.stop("worker")
    replies: list[asyncio.Future[T]] = [asyncio.ensure_future(s) for s in submissions]
    stream = Keys(platform.settings.redis_prefix).command_stream()
    while await redis.xlen(stream) < len(replies):  # noqa: ASYNC110 - the condition is in Redis
        await asyncio.sleep(0.02)
    return replies
