"""The `stillroom` command: one sub-command per module in tui/commands, heavy imports deferred."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines NAME, HELP, add_arguments(parser) and run(args) -> int.
COMMAND_MODULES = [
    "init", "demo", "open", "generate", "import_data", "export_data", "train", "eval", "compare",
    "chat", "export", "improve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stillroom",
        description="Distil a large teacher LLM into a small student, on your own machine. "
                    "Run with no command to open the workbench.")
    parser.add_argument("--version", action="version", version="stillroom 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"stillroom.tui.commands.{module_name}")
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from stillroom.core.errors import StillroomError
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["open", *(argv or [])])
    try:
        return args.run(args) or 0
    except StillroomError as exc:
        print(f"stillroom: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stillroom: stopped", file=sys.stderr)
        return 130
