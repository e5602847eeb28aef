"""The deployment's shape without Docker: Debian's nginx running deploy/nginx.conf (only
its upstream and listen addresses rewritten) in front of two API processes and the worker.

Clients connect to nginx from different loopback addresses (127.0.0.2, 127.0.0.3), so
nginx, not the client, says who they are; per-IP limits must key on them, not on nginx."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gql.transport.websockets import WebsocketsTransport

from app.kit.bus import CommandBus
from app.services import Services
from tests.e2e.support_protection import funded_trader
from tests.support.factories import create_user
from tests.support.live import Watch
from tests.support.processes import ROOT, Platform, free_port

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LOGIN_LIMIT = 3


def rewrite(conf: str, api_ports: tuple[int, int], listen: int) -> str:
    """deploy/nginx.conf with the compose host names and port replaced by loopback ones."""
    replacements = {
        "server api-1:8000": f"server 127.0.0.1:{api_ports[0]}",
        "server api-2:8000": f"server 127.0.0.1:{api_ports[1]}",
        "listen 80;": f"listen 127.0.0.1:{listen};",
    }
    for old, new in replacements.items():
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    return conf


@pytest.fixture(scope="module")
def proxied(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx's URL, in front of two fresh API processes (sharing the session's worker)."""
    work = Path(tmp_path_factory.mktemp("nginx"))
    apis = Platform(
        settings=platform.settings,
        log_dir=work,
        env={"TRADEGRAPH_RATE_LIMITS_PER_IP": f'{{"login": {LOGIN_LIMIT}, "register": 10}}'},
    )
    ports = (free_port(), free_port())
    listen = free_port()
    site = rewrite((ROOT / "deploy" / "nginx.conf").read_text(), ports, listen)
    (work / "site.conf").write_text(site)
    (work / "nginx.conf").write_text(
        f"""daemon off;
worker_processes 1;
user root;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    include {work}/site.conf;
}}
"""
    )
    nginx = None
    try:
        apis.start_api_on("api-1", ports[0])
        apis.start_api_on("api-2", ports[1])
        nginx = subprocess.Popen(
            [NGINX, "-c", str(work / "nginx.conf"), "-p", str(work)],
            stdout=subprocess.DEVNULL,
            stderr=(work / "nginx.out").open("wb"),
        )
        url = f"http://127.0.0.1:{listen}"
        deadline = time.monotonic() + 15
        while True:
            assert nginx.poll() is None, (work / "nginx.out").read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield url
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        apis.stop()


def client_from(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=10)


LOGIN = 'mutation($e: String!) { login(email: $e, password: "wrong password") { errors { code } } }'


async def test_per_ip_limits_key_on_the_real_client_not_on_nginx(
    proxied: str, services: Services
) -> None:
    email = (await create_user(services)).email

    async def login_codes(client: httpx.AsyncClient, headers: dict[str, str]) -> list[int]:
        codes = []
        for _ in range(LOGIN_LIMIT + 1):
            response = await client.post(
                proxied + "/graphql",
                json={"query": LOGIN, "variables": {"e": email}},
                headers=headers,
            )
            codes.append(response.status_code)
        return codes

    async with client_from("127.0.0.2") as first, client_from("127.0.0.3") as second:
        # 127.0.0.2 forges a header naming someone else: nginx appends the real address,
        # and the API takes the right-most untrusted hop, so the forgery buys nothing.
        forged = {"X-Forwarded-For": "203.0.113.9"}
        assert await login_codes(first, forged) == [200] * LOGIN_LIMIT + [429]
        # Another client behind the same nginx is not locked out by the first.
        assert (await login_codes(second, {}))[0] == 200


async def test_metrics_are_not_served_through_nginx(proxied: str) -> None:
    async with client_from("127.0.0.2") as client:
        assert (await client.get(proxied + "/metrics")).status_code == 404


async def test_traders_trade_and_subscribe_through_nginx(
    proxied: str, services: Services, bus: CommandBus, platform: Platform
) -> None:
    trader = await funded_trader(services, bus)
    through = Platform(settings=platform.settings, log_dir=platform.log_dir)
    through.port = int(proxied.rsplit(":", 1)[1])
    orders = Watch(
        through,
        "subscription { myOrders { id status } }",
        trader.token,
        WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
    ).start()
    book = Watch(
        through,
        'subscription { orderBook(symbol: "BTC-USDT") { type } }',
        None,
        WebsocketsTransport.APOLLO_SUBPROTOCOL,
    ).start()
    try:
        await book.wait_for(1)
        await asyncio.sleep(0.3)  # myOrders listening
        statuses = [await trader.place(proxied) for _ in range(4)]  # least_conn: both replicas
        assert statuses == ["PENDING"] * 4
        seen = await orders.wait_for(4, seconds=15)
        assert [item["myOrders"]["status"] for item in seen[:4]] == ["PENDING"] * 4
        updates = await book.wait_for(5, seconds=15)
        assert [u["orderBook"]["type"] for u in updates[:5]] == ["SNAPSHOT"] + ["DELTA"] * 4
        await orders.stop()
        await book.stop()
    finally:
        await orders.stop_quietly()
        await book.stop_quietly()
        await trader.cancel_all(proxied)
