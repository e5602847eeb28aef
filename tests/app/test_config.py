from __future__ import annotations

import pytest

from app.config import DEFAULT_JWT_SECRET, Environment, InsecureSettingsError, Settings


def test_conventional_urls_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/tg")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("TRADEGRAPH_REDIS_PREFIX", "p:")
    settings = Settings()
    assert settings.database_url == "postgresql://u@db:5432/tg"
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.redis_prefix == "p:"
    assert settings.env is Environment.DEVELOPMENT


def test_development_may_use_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADEGRAPH_JWT_SECRET", raising=False)
    assert Settings(env=Environment.DEVELOPMENT).jwt_secret == DEFAULT_JWT_SECRET


def test_production_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEGRAPH_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/tg")
    monkeypatch.setenv("REDIS_URL", "redis://cache")
    monkeypatch.delenv("TRADEGRAPH_JWT_SECRET", raising=False)
    with pytest.raises(InsecureSettingsError, match="TRADEGRAPH_JWT_SECRET"):
        Settings()


def test_production_refuses_a_short_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/tg")
    monkeypatch.setenv("REDIS_URL", "redis://cache")
    with pytest.raises(InsecureSettingsError):
        Settings(env=Environment.PRODUCTION, jwt_secret="short")


def test_production_refuses_embedded_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(InsecureSettingsError, match="DATABASE_URL"):
        Settings(env=Environment.PRODUCTION, jwt_secret="s" * 40)


def test_production_starts_with_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/tg")
    monkeypatch.setenv("REDIS_URL", "redis://cache")
    settings = Settings(env=Environment.PRODUCTION, jwt_secret="s" * 40)
    assert settings.is_production


def test_the_api_process_refuses_to_start_in_production_with_the_default_secret() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGRAPH_")}
    env.update(
        TRADEGRAPH_ENV="production", DATABASE_URL="postgresql://u@db/tg", REDIS_URL="redis://c"
    )
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "api", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TRADEGRAPH_JWT_SECRET" in result.stderr
