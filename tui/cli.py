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


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given `argv`, only the command it names gets its arguments (`open` when it
    names none). A command's arguments may import parts of the engine (its settings' choices), and
    `stillroom --help` or one command should not pay for every other command's."""
    wanted = _command_named(argv) if argv is not None else None
    parser = argparse.ArgumentParser(
        prog="stillroom",
        description="Distil a large teacher LLM into a small student, on your own machine. "
                    "Run with no command to open the workbench.")
    parser.add_argument("--version", action="version", version="stillroom 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"stillroom.tui.commands.{module_name}")
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        if argv is None or module.NAME == (wanted or "open"):
            module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def _command_named(argv: list[str]) -> str | None:
    """The first word of `argv` that is not an option: the command, if there is one."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    from stillroom.core.errors import StillroomError
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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
