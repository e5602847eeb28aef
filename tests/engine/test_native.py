"""Which engine runs: the compiled one only when it is exactly the sources, else the pure one."""

from __future__ import annotations

import os
import shutil
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import engine
import engine.book
import engine.engine
import engine.units
from engine import native


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the engine's sources with a compiled folder that matches them."""
    monkeypatch.delenv(native.PURE_VARIABLE, raising=False)
    copy = tmp_path / "engine"
    copy.mkdir()
    for source in native.PACKAGE.glob("*.py"):
        shutil.copy(source, copy)
    (copy / "_native").mkdir()
    (copy / "_native" / native.FINGERPRINT_FILE).write_text(native.fingerprint(copy) + "\n")
    return copy


def test_a_compiled_folder_that_matches_the_sources_is_used(package: Path) -> None:
    assert native.native_dir(package)[0] == package / "_native"


def test_an_edited_source_runs_pure_until_it_is_compiled_again(package: Path) -> None:
    with (package / "book.py").open("a") as source:
        source.write("\n# edited\n")
    directory, why = native.native_dir(package)
    assert directory is None
    assert "changed" in why


def test_a_module_that_must_stay_interpreted_is_never_loaded_compiled(package: Path) -> None:
    (package / "_native" / f"units{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    assert native.native_dir(package)[0] is None


def test_the_variable_forces_the_pure_engine(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(native.PURE_VARIABLE, "1")
    assert native.native_dir(package) == (None, f"pure: {native.PURE_VARIABLE} is set")


def test_no_compiled_folder_means_pure(package: Path) -> None:
    shutil.rmtree(package / "_native")
    assert native.native_dir(package)[0] is None


def test_this_process_runs_the_engine_it_says() -> None:
    compiled = tuple(EXTENSION_SUFFIXES)
    for module in (engine.engine, engine.book):
        assert str(module.__file__).endswith(compiled) is engine.COMPILED
    assert str(engine.units.__file__).endswith(".py")  # never compiled
    if os.environ.get(native.PURE_VARIABLE, "") not in ("", "0"):
        assert not engine.COMPILED
    assert engine.COMPILED is (native.native_dir()[0] is not None)
