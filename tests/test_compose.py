"""docker-compose.yml cannot run on these machines; check its shape and its commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, dict[str, dict[str, object]]]:
    data: dict[str, dict[str, dict[str, object]]] = yaml.safe_load(
        (ROOT / "docker-compose.yml").read_text()
    )
    return data


def _subcommands() -> set[str]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    assert isinstance(subparsers.choices, dict)
    return set(subparsers.choices)


def test_compose_has_every_process(compose: dict[str, dict[str, dict[str, object]]]) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "migrate",
        "worker",
        "jobs",
        "risk-monitor",
        "api-1",
        "api-2",
        "nginx",
    }


def test_each_tradegraph_command_is_a_real_cli_command(
    compose: dict[str, dict[str, dict[str, object]]],
) -> None:
    known = _subcommands()
    checked = 0
    assert {"migrate", "worker", "jobs", "risk-monitor", "api"} <= known
    for service in compose["services"].values():
        command = service.get("command")
        if not (isinstance(command, list) and command[0] == "tradegraph"):
            continue
        assert command[1] in known
        build_parser().parse_args(command[1:])  # exits (SystemExit) on bad arguments
        checked += 1
    assert checked == 6  # migrate, worker, jobs, risk-monitor, api-1, api-2


def test_the_image_default_command_is_the_api() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["tradegraph", "api", "--host", "0.0.0.0", "--port", "8000"]' in dockerfile


def test_nginx_config_fronts_both_replicas_and_upgrades_websockets() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server api-1:8000" in conf and "server api-2:8000" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf


def test_redis_keeps_its_data_on_a_volume(compose: dict[str, dict[str, dict[str, object]]]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert isinstance(command, list)
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert redis["volumes"] == ["redisdata:/data"]  # the image's working directory
    assert "redisdata" in compose["volumes"]


def test_every_tradegraph_service_restarts_unless_stopped(
    compose: dict[str, dict[str, dict[str, object]]],
) -> None:
    for name in ("worker", "risk-monitor", "api-1", "api-2"):
        assert compose["services"][name]["restart"] == "unless-stopped", name


def test_the_image_can_migrate_from_its_working_directory() -> None:
    # The image installs the package (`pip install .`), which holds neither alembic.ini nor
    # migrations/: app/kit/migrate.py then reads them from the working directory.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "WORKDIR /srv/tradegraph" in dockerfile
    assert "COPY migrations migrations" in dockerfile
    assert "COPY alembic.ini ./" in dockerfile
