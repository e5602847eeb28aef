"""The `tradegraph` command: run, api, worker, jobs, risk-monitor, migrate, create-admin,
fees, funds."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import ProgrammingError

from app.config import InsecureSettingsError, Settings, get_settings
from app.kit import migrate as migrations
from app.kit.bootstrap import (
    PlatformNotFound,
    endpoints_file,
    forget_endpoints,
    locate_platform,
    record_endpoints,
    resolve_services,
    running_platform,
)

log = logging.getLogger("tradegraph")


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    assert settings.database_url and settings.redis_url
    env["DATABASE_URL"] = settings.database_url
    env["REDIS_URL"] = settings.redis_url
    return env


def _fail(message: str, code: int = 2) -> int:
    """One line on stderr, no traceback: what is wrong and which setting changes it."""
    print(f"tradegraph: {message}", file=sys.stderr)
    return code


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the API could not listen on ``host:port``, or None if it can.

    Binds the way uvicorn does (SO_REUSEADDR), so only a port with a listener is refused."""
    if not 0 <= port <= 65535:
        return f"{port} is not a port (0 to 65535)"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        return f"{host!r} is not an address to listen on ({exc})"
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use (another TradeGraph, or another server)"
            return f"cannot listen on {host}:{port} ({exc.strerror or exc})"
    return None


def cmd_run(args: argparse.Namespace) -> int:
    """Everything `make run` does: services, migrations, then the worker and the API (its
    ``--workers`` processes; stopping the API's supervisor stops them all)."""
    settings = get_settings()
    host: str = args.host or settings.api_host
    port: int = settings.api_port if args.port is None else args.port
    if problem := _cannot_listen(host, port):
        return _fail(f"{problem}; choose another port with --port or TRADEGRAPH_API_PORT")
    if (running := running_platform(settings)) is not None:
        return _fail(
            f"TradeGraph is already running from {settings.data_dir.resolve()} "
            f"(pid {running['pid']}, {running.get('api_url')}); stop it first (or delete "
            f"{endpoints_file(settings)} if that is not TradeGraph), or give this one its own "
            "TRADEGRAPH_DATA_DIR"
        )
    settings, embedded = resolve_services(settings)
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert settings.database_url
        migrations.upgrade(settings.database_url)
        log.info("migrations applied")
        env = _child_env(settings)
        url = f"http://{host}:{port}"
        record_endpoints(settings, url)
        cli = [sys.executable, "-m", "app.cli"]
        worker_cmd = [*cli, "worker"]
        children.append(subprocess.Popen(worker_cmd, env=env))
        workers: int = args.workers or settings.api_workers
        api = [*cli, "api", "--host", host, "--port", str(port), "--workers", str(workers)]
        children.append(subprocess.Popen(api, env=env))
        jobs_cmd = [*cli, "jobs"]
        children.append(subprocess.Popen(jobs_cmd, env=env))
        monitor_cmd = [*cli, "risk-monitor"]
        children.append(subprocess.Popen(monitor_cmd, env=env))
        print(
            f"TradeGraph: GraphQL on {url}/graphql ({workers} API processes) — Ctrl-C stops it",
            flush=True,
        )
        restarts: list[float] = []
        while not stopping:
            worker, api_proc, jobs, risk_monitor = children
            if jobs.poll() is not None:  # idempotent: a fresh one simply runs again
                log.warning("the jobs process exited with %s; restarting it", jobs.returncode)
                children[2] = subprocess.Popen(jobs_cmd, env=env)
            if risk_monitor.poll() is not None:  # idempotent on the activity it has seen
                log.warning(
                    "the risk monitor exited with %s; restarting it", risk_monitor.returncode
                )
                children[3] = subprocess.Popen(monitor_cmd, env=env)
            if api_proc.poll() is not None:
                log.error("the API exited with %s; stopping", api_proc.returncode)
                break
            if worker.poll() is not None:
                # The worker exits on purpose when a commit fails: a fresh one rebuilds its
                # state from PostgreSQL. Give up if it keeps dying.
                restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
                if len(restarts) > 5:
                    log.error("the worker exited 5 times in a minute; stopping")
                    break
                log.warning("the worker exited with %s; restarting it", worker.returncode)
                children[0] = subprocess.Popen(worker_cmd, env=env)
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        forget_endpoints(settings)
        embedded.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_open_file_limit() -> None:
    """To its hard limit, so many WebSocket clients cannot starve HTTP of sockets before the
    connection caps do their job (the API processes inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the API, from ``--workers`` processes on one socket (uvicorn's supervisor
    starts them, restarts one that dies, and stops them all on SIGINT / SIGTERM).

    uvloop and httptools, not the pure-Python loop and parser. WebSocket messages are capped
    at the HTTP body limit while they are read. Forwarded headers are handled in the app
    (``TRADEGRAPH_TRUSTED_PROXIES``), not by uvicorn. With several processes, metrics go
    through a directory of their own (see :mod:`app.kit.metrics`), made here and removed
    when they have all stopped."""
    import tempfile

    import uvicorn

    from app.kit.metrics import MULTIPROCESS_DIR

    _raise_open_file_limit()
    settings = get_settings()
    workers: int = args.workers or settings.api_workers
    with contextlib.ExitStack() as cleanup:
        if workers > 1 and not os.environ.get(MULTIPROCESS_DIR):
            # Spawned, the processes import prometheus_client afresh and see the variable.
            os.environ[MULTIPROCESS_DIR] = cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="tradegraph-metrics-")
            )
        uvicorn.run(
            "app.asgi:create_app",
            factory=True,
            host=args.host or settings.api_host,
            port=args.port or settings.api_port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_level=settings.log_level.lower(),
            proxy_headers=False,
            ws_max_size=settings.max_body_bytes,
            ws_per_message_deflate=settings.ws_compression,
        )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.matching.worker import run_worker

    settings = get_settings()
    if not settings.database_url or not settings.redis_url:
        print("error: the worker needs DATABASE_URL and REDIS_URL", file=sys.stderr)
        return 2
    return run_worker(settings)


def cmd_jobs(args: argparse.Namespace) -> int:
    from workers.fees.jobs import run_jobs

    settings = get_settings()
    if not settings.database_url or not settings.redis_url:
        print("error: the jobs need DATABASE_URL and REDIS_URL", file=sys.stderr)
        return 2
    return run_jobs(settings)


def cmd_risk_monitor(args: argparse.Namespace) -> int:
    from workers.risk_monitor.monitor import run_risk_monitor

    settings = get_settings()
    if not settings.database_url or not settings.redis_url:
        print("error: the risk monitor needs DATABASE_URL and REDIS_URL", file=sys.stderr)
        return 2
    return run_risk_monitor(settings)


def cmd_fees_recompute(args: argparse.Namespace) -> int:
    """The fee tier job, once, now (what `tradegraph jobs` runs daily)."""
    from workers.fees.jobs import recompute_once

    try:
        settings, embedded = locate_platform(get_settings(), database=True, redis=True)
    except PlatformNotFound as exc:
        return _fail(f"fees recompute goes through the matching worker, but {exc}")
    try:
        outcome = asyncio.run(
            recompute_once(settings, users=args.user, timeout=args.timeout, wait_for_worker=2.0)
        )
    except LookupError as exc:
        return _fail(f"fees recompute goes through the matching worker, but {exc}")
    except (OSError, RedisError) as exc:
        return _fail(f"cannot reach the platform: {exc}")
    finally:
        embedded.close()
    for user_id, (old, new) in sorted(outcome.changed.items()):
        print(f"user {user_id}: tier {old} -> {new}")
    print(outcome.summary())
    return 1 if outcome.failed else 0


def cmd_funds(args: argparse.Namespace) -> int:
    """deposit / withdraw through the command bus, like every other balance change."""
    from app.kit.bus import CommandBus, CommandTimeout
    from app.kit.redis import Keys, create_redis

    try:
        settings, _ = locate_platform(get_settings(), redis=True)
    except PlatformNotFound as exc:
        return _fail(f"{args.command} goes through the matching worker, but {exc}")

    async def go() -> int:
        assert settings.redis_url
        redis = create_redis(settings.redis_url)
        bus = CommandBus(redis, Keys(settings.redis_prefix))
        payload = {"user_id": args.user, "asset": args.asset.upper(), "amount": args.amount}
        try:
            reply = await bus.submit(
                args.command, payload, command_id=args.command_id, timeout=args.timeout
            )
        except CommandTimeout as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        finally:
            await bus.close()
            await redis.aclose()
        if not reply["ok"]:
            error = reply["error"]
            print(f"error: {error['code']}: {error['message']}", file=sys.stderr)
            return 1
        balance = reply["balance"]
        print(
            f"user {balance['user_id']} {balance['asset']}: "
            f"available {balance['available']}, locked {balance['locked']}"
        )
        return 0

    try:
        return asyncio.run(go())
    except (OSError, RedisError) as exc:
        return _fail(f"cannot reach Redis at {settings.redis_url}: {exc}")


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        settings, embedded = locate_platform(get_settings(), database=True)
    except PlatformNotFound as exc:
        return _fail(str(exc))
    try:
        assert settings.database_url
        if args.revision.startswith("-") or args.downgrade:
            migrations.downgrade(settings.database_url, args.revision)
        else:
            migrations.upgrade(settings.database_url, args.revision)
    finally:
        embedded.close()
    print(f"migrations at {args.revision}")
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from redis.asyncio import Redis

    from app.accounts.service import AccountError, create_admin
    from app.kit.bus import CommandBus
    from app.kit.db import create_engine, create_sessionmaker
    from app.kit.redis import Keys, create_redis

    try:
        try:  # with the platform's Redis when there is one: a running worker is told too
            settings, embedded = locate_platform(get_settings(), database=True, redis=True)
        except PlatformNotFound:
            settings, embedded = locate_platform(get_settings(), database=True)
    except PlatformNotFound as exc:
        return _fail(str(exc))

    async def worker_bus(redis: Redis | None) -> CommandBus | None:
        """The bus, if a matching worker is running (its heartbeat is live)."""
        keys = Keys(settings.redis_prefix)
        try:
            if redis is not None and await redis.exists(keys.worker_heartbeat()):
                return CommandBus(redis, keys)
        except (OSError, RedisError):
            pass
        return None

    async def go() -> int:
        assert settings.database_url
        engine = create_engine(settings.database_url, pool_size=1)
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        bus = await worker_bus(redis)
        try:
            user = await create_admin(
                create_sessionmaker(engine),
                email=args.email,
                password=args.password,
                username=args.username,
                bus=bus,
            )
        except AccountError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except ProgrammingError as exc:
            if type(exc.orig).__name__.endswith("UndefinedTableError"):
                return _fail("the database has no tables yet: run `tradegraph migrate` first")
            raise
        finally:
            await engine.dispose()
            if bus is not None:
                await bus.close()
            if redis is not None:
                await redis.aclose()
        name = f" ({user.username})" if user.username else ""
        print(f"admin {user.email}{name} (id {user.id}) ready")
        return 0

    try:
        return asyncio.run(go())
    finally:
        embedded.close()


WORKERS_HELP = "API processes (default TRADEGRAPH_API_WORKERS, else one per core)"


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradegraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the whole platform (what `make run` does)")
    run.add_argument("--host", default=None, help="default TRADEGRAPH_API_HOST (127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="default TRADEGRAPH_API_PORT (8000)")
    run.add_argument("--workers", type=_positive, default=None, help=WORKERS_HELP)
    run.set_defaults(func=cmd_run)

    api = sub.add_parser("api", help="serve the GraphQL API (needs DATABASE_URL and REDIS_URL)")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--workers", type=_positive, default=None, help=WORKERS_HELP)
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run the matching worker (the single writer)")
    worker.set_defaults(func=cmd_worker)

    jobs = sub.add_parser("jobs", help="run the scheduled jobs (the daily fee tier recompute)")
    jobs.set_defaults(func=cmd_jobs)

    risk = sub.add_parser(
        "risk-monitor", help="run the manipulation detector (reads the activity stream)"
    )
    risk.set_defaults(func=cmd_risk_monitor)

    fees = sub.add_parser("fees", help="fee tiers")
    fees_sub = fees.add_subparsers(dest="fees_command", required=True)
    recompute = fees_sub.add_parser(
        "recompute", help="recompute every user's tier from their 30-day volume, now"
    )
    recompute.add_argument(
        "--user", type=int, action="append", default=None, help="only this user id (repeatable)"
    )
    recompute.add_argument("--timeout", type=float, default=10.0)
    recompute.set_defaults(func=cmd_fees_recompute)

    for name, verb in (("deposit", "credit"), ("withdraw", "debit")):
        funds = sub.add_parser(name, help=f"{verb} a user's balance through the worker")
        funds.add_argument("--user", type=int, required=True, help="user id")
        funds.add_argument("--asset", required=True, help="asset code, e.g. USDT")
        funds.add_argument("--amount", required=True, help="a decimal amount, e.g. 1000.5")
        funds.add_argument("--command-id", default=None, help="idempotency key for retries")
        funds.add_argument("--timeout", type=float, default=10.0)
        funds.set_defaults(func=cmd_funds)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument("--downgrade", action="store_true", help="downgrade to REVISION")
    migrate.set_defaults(func=cmd_migrate)

    admin = sub.add_parser("create-admin", help="create or promote an admin (KYC approved)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.add_argument(
        "--username", default=None, help="3-50 letters, digits, '_', '.' or '-' (optional)"
    )
    admin.set_defaults(func=cmd_create_admin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("TRADEGRAPH_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ValidationError as exc:
        wrong = "; ".join(
            f"TRADEGRAPH_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        return _fail(f"bad setting: {wrong}")
    except InsecureSettingsError as exc:
        return _fail(str(exc))
    return result


if __name__ == "__main__":
    sys.exit(main())
