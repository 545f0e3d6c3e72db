"""stillroom export-data PATH: write the training rows (seeds + kept rows) in a chosen format."""
from __future__ import annotations

from pathlib import Path

from stillroom.tui.commands.common import console

NAME = "export-data"
HELP = "export seeds and kept synthetic rows as OpenAI messages, Alpaca or ShareGPT JSONL"


def add_arguments(parser) -> None:
    parser.add_argument("path", type=Path, help="project folder")
    parser.add_argument("--format", default="openai", choices=["openai", "alpaca", "sharegpt"])
    parser.add_argument("--output", "-o", type=Path, default=None,
                        help="output file (default: exports/data-FORMAT.jsonl in the project)")
    parser.add_argument("--only", choices=["all", "seeds", "kept"], default="all")


def run(args) -> int:
    from stillroom.core import records
    from stillroom.core.project import Project
    project = Project.open(args.path)
    rows = []
    if args.only in ("all", "seeds"):
        rows += project.seeds()
    if args.only in ("all", "kept"):
        rows += project.kept_rows()
    output = args.output or project.exports_dir / f"data-{args.format}.jsonl"
    records.write_rows(output, rows, args.format)
    console().print(f"wrote {len(rows)} row(s) to {output}")
    return 0
