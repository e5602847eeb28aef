"""Run the Alembic migrations from code (the CLI, `make run` and the tests use this)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

log = logging.getLogger(__name__)

# The source checkout holds alembic.ini and migrations/; an installed package (the Docker
# image installs it with `pip install .`) does not, and runs from the folder that does.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
ROOT = _PACKAGE_ROOT if (_PACKAGE_ROOT / "alembic.ini").is_file() else Path.cwd()


def alembic_config(database_url: str) -> Config:
    if not (ROOT / "alembic.ini").is_file():
        raise FileNotFoundError(f"no alembic.ini in {ROOT}: run migrations from the project folder")
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def _quiet_alembic() -> None:
    """Alembic announces its context and each step at INFO; keep that for DEBUG."""
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("alembic").setLevel(logging.WARNING)


def upgrade(database_url: str, revision: str = "head") -> None:
    _quiet_alembic()
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    _quiet_alembic()
    command.downgrade(alembic_config(database_url), revision)
