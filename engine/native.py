"""Which engine runs: the modules compiled by mypyc, or this pure-Python source.

``setup.py`` compiles the modules of this package but this one, ``__init__`` and ``units`` into
``engine/_native/`` (one small extension per module and one shared library) and writes
there the fingerprint of the sources it compiled. Importing this module, first thing in
``engine/__init__``, puts that folder first on the package's ``__path__`` - so
``import engine.book`` loads ``_native/book.*.so`` - when all of these hold:

- ``TRADEGRAPH_PURE_ENGINE`` is unset (or ``0``): set it to run the pure engine;
- the folder's fingerprint matches the sources: an edited engine runs pure, with a
  warning, until ``make native`` compiles it again;
- the compiled modules load (same Python, same ABI).

Otherwise every module is the ``.py`` source. The compiled modules never sit next to the
sources: an extension module there would shadow the ``.py`` of the same name, and an edit
would silently not run. ``COMPILED`` and ``BUILD`` (why) say which engine this process has.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
NATIVE = PACKAGE / "_native"
FINGERPRINT_FILE = "FINGERPRINT"
PURE_VARIABLE = "TRADEGRAPH_PURE_ENGINE"
NOT_COMPILED = ("__init__.py", "native.py", "units.py")
"""``units`` converts at the edges and must refuse a value of any type with a ValueError;
compiled, its typed parameters would raise TypeError first."""


def compiled_sources(package: Path = PACKAGE) -> list[Path]:
    """The modules that setup.py compiles."""
    return sorted(p for p in package.glob("*.py") if p.name not in NOT_COMPILED)


def fingerprint(package: Path = PACKAGE) -> str:
    """A digest of the compiled modules' sources."""
    digest = hashlib.sha256()
    for path in compiled_sources(package):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def native_dir(package: Path = PACKAGE) -> tuple[Path | None, str]:
    """The folder of compiled modules to load, or ``None``; and why."""
    if os.environ.get(PURE_VARIABLE, "") not in ("", "0"):
        return None, f"pure: {PURE_VARIABLE} is set"
    native = package / NATIVE.name
    try:
        built = (native / FINGERPRINT_FILE).read_text().strip()
    except OSError:
        return None, "pure: not compiled (no mypyc or C compiler at install; `make native`)"
    if built != fingerprint(package):
        return None, "pure: the sources changed since they were compiled (`make native`)"
    stray = [p.name for p in native.glob("*.so") if f"{p.name.split('.')[0]}.py" in NOT_COMPILED]
    if stray:
        return None, f"pure: {native} holds modules that must not be compiled: {stray}"
    return native, f"compiled by mypyc ({native})"


def _select() -> tuple[bool, str]:
    package = sys.modules[__package__ or ""]
    native, why = native_dir()
    if native is None:
        if "changed" in why:
            warnings.warn(f"engine: {why}", RuntimeWarning, stacklevel=3)
        return False, why
    package.__path__.insert(0, str(native))
    try:
        core = importlib.import_module(f"{package.__name__}.engine")
        if not str(core.__file__).endswith(tuple(EXTENSION_SUFFIXES)):
            raise ImportError(f"{core.__file__} is not an extension module")
    except ImportError as exc:
        # Back to the sources, forgetting whatever half of the compiled engine got loaded.
        package.__path__.remove(str(native))
        for name in [n for n in sys.modules if n.startswith(f"{package.__name__}.")]:
            if name != __name__:
                del sys.modules[name]
        why = f"pure: the compiled engine does not load ({exc})"
        warnings.warn(f"engine: {why}", RuntimeWarning, stacklevel=3)
        return False, why
    return True, why


# setup.py loads this file on its own, outside the package, for its helpers only.
COMPILED, BUILD = _select() if __package__ else (False, "not loaded as part of the package")
