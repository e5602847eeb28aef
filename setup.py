"""The install's one build step: compile the matching engine with mypyc, if it can be.

Everything else is in pyproject.toml. The engine's modules (all of ``engine/`` but
``__init__`` and ``native``) are compiled into ``engine/_native/``, next to the fingerprint
of the sources they came from; ``engine/native.py`` says when they are loaded. Nothing here
can fail the install: without mypyc, without a C compiler, or on a compile error the
package installs pure Python, with a warning. ``TRADEGRAPH_PURE_ENGINE=1`` skips the
compilation. After editing the engine, ``make native`` compiles it again in place (until
then the pure source runs).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_engine_native", ROOT / "engine" / "native.py")
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)  # only its helpers: the package itself is not imported

SHARED_LIBRARY = "engine._native.lib"
"""mypyc's group name: its shared library is ``engine/_native/lib__mypyc.*.so``."""


def warn(message: str) -> None:
    print(f"\nWARNING: {message}; the engine installs as pure Python.\n", file=sys.stderr)


def engine_extensions() -> list[object]:
    if os.environ.get(native.PURE_VARIABLE, "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        warn("mypyc is not installed")
        return []
    sources = [str(path.relative_to(ROOT)) for path in native.compiled_sources()]
    build = Path("build") / "mypyc"
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypy names the modules after the paths
    try:
        # Its own mypy configuration: pyproject's names plugins the build does not have.
        build.mkdir(parents=True, exist_ok=True)
        (build / "mypy.ini").write_text("[mypy]\nstrict = True\nignore_missing_imports = True\n")
        extensions = mypycify(
            ["--config-file", str(build / "mypy.ini"), *sources],
            opt_level="3",
            group_name=SHARED_LIBRARY,
            target_dir=str(build),
        )
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        warn(f"mypyc could not compile the engine ({exc!r})")
        return []
    finally:
        os.chdir(cwd)
    for extension in extensions:
        # One shim per module, moved from engine/X to engine/_native/X so that it never
        # shadows engine/X.py; its init function keeps the module's name.
        name: str = extension.name  # type: ignore[attr-defined]
        if not name.startswith("engine._native."):
            extension.name = "engine._native." + name.removeprefix("engine.")  # type: ignore[attr-defined]
    return extensions


class BuildEngine(build_ext):
    """Builds the compiled engine, or nothing if it cannot; then writes its fingerprint."""

    def run(self) -> None:
        in_place = self.inplace or getattr(self, "editable_mode", False)
        # Only this build's modules: a module compiled by an earlier build but not by this
        # one would shadow its source; and a build that fails half way leaves no fingerprint.
        shutil.rmtree(Path(self.build_lib) / "engine" / "_native", ignore_errors=True)
        if in_place and self.extensions:
            shutil.rmtree(native.NATIVE, ignore_errors=True)
            native.NATIVE.mkdir()
        try:
            super().run()
        except Exception as exc:  # no compiler, a compile error
            warn(f"the compiled engine could not be built ({exc})")
            return
        if not self.extensions:
            return
        targets = {Path(self.build_lib) / "engine" / "_native"}
        if in_place:
            targets.add(native.NATIVE)
        for target in targets:
            target.mkdir(parents=True, exist_ok=True)
            (target / native.FINGERPRINT_FILE).write_text(native.fingerprint() + "\n")

    def get_outputs(self) -> list[str]:
        outputs: list[str] = super().get_outputs()
        if self.extensions:
            outputs.append(str(Path(self.build_lib) / "engine" / "_native" / "FINGERPRINT"))
        return outputs


setup(ext_modules=engine_extensions(), cmdclass={"build_ext": BuildEngine})
