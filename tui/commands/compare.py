"""stillroom compare PATH [--run RUN]: the evaluated rows side by side (input, reference, three answers)."""
from __future__ import annotations

from stillroom.tui.commands.common import add_project_and_run, console

NAME = "compare"
HELP = "print the evaluated test rows side by side: input, reference, teacher, base and tuned answers"


def add_arguments(parser) -> None:
    add_project_and_run(parser)
    parser.add_argument("--wrong", action="store_true", help="only rows the tuned student got wrong")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="print at most N rows")


def mark(score: float) -> tuple[str, str]:
    if score >= 0.999:
        return "✓", "green"
    if score <= 0.001:
        return "✗", "red"
    return f"{score:.2f}", "yellow"


def run(args) -> int:
    from rich.table import Table
    from rich.text import Text
    from stillroom.core.evaluate import MODELS, read_eval
    from stillroom.core.models import ROLE_TITLES
    from stillroom.core.project import Project

    project = Project.open(args.path)
    result = read_eval(project, args.run_id)
    rows = result.records
    if args.wrong:
        rows = [r for r in rows if r["outputs"]["tuned"]["score"] < 0.999]
    if args.limit is not None:
        rows = rows[:max(0, args.limit)]
    out = console()
    table = Table(show_lines=True, title=f"run {result.run_id} · {len(rows)} of {len(result.records)} rows · "
                                         f"{result.headline}", title_justify="left", expand=True)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("input", ratio=3)
    table.add_column("reference", ratio=1)
    for key in MODELS:
        table.add_column(ROLE_TITLES[key], ratio=2)
    for r in rows:
        cells = []
        for key in MODELS:
            answer = r["outputs"][key]
            symbol, style = mark(answer["score"])
            cell = Text(symbol + " ", style=f"bold {style}")
            cell.append(answer["text"] or "(empty)")      # model text is data: appended, never parsed as markup
            cells.append(cell)
        table.add_row(str(r["index"]), Text(r["input"]), Text(r["reference"]), *cells)
    out.print(table)
    return 0
