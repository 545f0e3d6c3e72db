"""stillroom import FILE --into PATH: add Alpaca, ShareGPT, CSV or OpenAI rows to seeds or test rows."""
from __future__ import annotations

from pathlib import Path

from stillroom.tui.commands.common import console

NAME = "import"
HELP = "import examples (OpenAI messages JSONL, Alpaca, ShareGPT or CSV) into a project's seeds or test rows"


def add_arguments(parser) -> None:
    parser.add_argument("file", type=Path, help="file to import")
    parser.add_argument("--into", type=Path, required=True, help="project folder")
    parser.add_argument("--to", choices=["seeds", "test"], default="seeds", help="where the rows go")
    parser.add_argument("--format", default="auto", choices=["auto", "openai", "alpaca", "sharegpt", "csv"])
    parser.add_argument("--input-column", default="input", help="CSV: column with the user text")
    parser.add_argument("--output-column", default="output", help="CSV: column with the answer")
    parser.add_argument("--system-column", default="", help="CSV: optional column with a system message")
    parser.add_argument("--replace", action="store_true", help="replace the rows instead of adding to them")


def run(args) -> int:
    from stillroom.core import records
    from stillroom.core.project import Project
    project = Project.open(args.into)
    rows = records.import_file(args.file, fmt=args.format, input_column=args.input_column,
                               output_column=args.output_column, system_column=args.system_column,
                               system=project.config.task.system_prompt)
    with project.lock("stillroom import"):
        if args.to == "seeds":
            existing = [] if args.replace else project.all_seeds()
            project.save_seeds(existing + rows)
            target = project.seeds_path
        else:
            existing = [] if args.replace or not project.test_path.exists() else project.tests()
            project.save_tests(existing + rows)
            target = project.test_path
    console().print(f"imported {len(rows)} row(s) from {args.file} into {target} "
                    f"({len(existing) + len(rows)} in all)")
    return 0
