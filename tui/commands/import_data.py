"""stillroom import FILE --into PATH: add Alpaca, ShareGPT, CSV or OpenAI rows to seeds or test rows;
the labels (or the task kind) of a placeholder task come from their answers (core/importing.py)."""
from __future__ import annotations

from pathlib import Path

from stillroom.tui.commands.common import add_column_arguments, column_options, console

NAME = "import"
HELP = "import examples (OpenAI messages JSONL, Alpaca, ShareGPT or CSV) into a project's seeds or test rows"


def add_arguments(parser) -> None:
    parser.add_argument("file", type=Path, help="file to import")
    parser.add_argument("--into", type=Path, required=True, help="project folder")
    parser.add_argument("--to", choices=["seeds", "test"], default="seeds", help="where the rows go")
    parser.add_argument("--format", default="auto", choices=["auto", "openai", "alpaca", "sharegpt", "csv"])
    add_column_arguments(parser, "CSV")
    parser.add_argument("--replace", action="store_true", help="replace the rows instead of adding to them")


def run(args) -> int:
    from stillroom.core.importing import import_into
    from stillroom.core.project import Project
    project = Project.open(args.into)
    columns, guessed = column_options(args, args.file) if args.format in ("auto", "csv") else ({}, "")
    with project.lock("stillroom import"):
        result = import_into(project, args.file, to=args.to, replace_rows=args.replace, fmt=args.format,
                             system_column=args.system_column, **columns)
    out = console()
    out.print(f"imported {result.count} row(s) from {args.file} into {result.target} ({result.total} in all)",
              soft_wrap=True)
    if guessed:
        out.print(guessed, soft_wrap=True)
    if result.notice:
        out.print(f"{result.notice} (change it with task.type and task.labels in {project.config_path})",
                  soft_wrap=True)
    return 0
