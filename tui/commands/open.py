"""stillroom open [PATH]: the workbench (also what `stillroom` with no command runs)."""
from __future__ import annotations

from pathlib import Path

NAME = "open"
HELP = "open the workbench on a project (or the project list)"


def add_arguments(parser) -> None:
    parser.add_argument("path", nargs="?", type=Path, help="project folder")


def open_app(path) -> int:
    from stillroom.tui.app import make_app
    make_app(path).run()
    return 0


def run(args) -> int:
    return open_app(args.path)
