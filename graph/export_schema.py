"""Print the schema's SDL: `python -m graph.export_schema [PATH]` (make schema)."""

from __future__ import annotations

import sys
from pathlib import Path

from graph.schema import schema


def sdl() -> str:
    return schema.as_str() + "\n"


def main(argv: list[str]) -> None:
    if argv:
        Path(argv[0]).write_text(sdl())
    else:
        sys.stdout.write(sdl())


if __name__ == "__main__":
    main(sys.argv[1:])
