"""How the workbench and the CLI write durations, numbers, an example's messages and the export's quant table.

Nothing is imported at module level: `stillroom --help` imports this through the commands.
The models' names (teacher, base student, tuned student) are core's: stillroom.core.models.ROLE_TITLES;
so is text on one line: stillroom.core.records.one_line.
"""
from __future__ import annotations


def fmt_seconds(seconds: float | None) -> str:
    """Elapsed time or ETA as m:ss or h:mm:ss; "--:--" when unknown (None, NaN, infinite)."""
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "--:--"
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_float(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_percent(share: float | None, missing: str = "–") -> str:
    """A share (0.88) as a whole percentage ("88%")."""
    return missing if share is None else f"{share * 100:.0f}%"


def messages_text(messages: list[dict]):
    """An example's messages, one a line, each after its role (model text is data: appended, never markup)."""
    from rich.text import Text
    out = Text()
    for n, message in enumerate(messages):
        if n:
            out.append("\n")
        out.append(f"{message['role']:>9}  ", style="bold")
        out.append(message["content"])
    return out


def quant_table(table: dict):
    """The quant table (core.export's columns and cells) as a Rich renderable, with its notes below."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    from stillroom.core.export import table_cells, table_columns, table_notes
    grid = Table(title=f"GGUF check on {table['examples']} test rows", title_justify="left", box=None,
                 pad_edge=False, header_style="bold")
    for n, column in enumerate(table_columns(table)):
        grid.add_column(column, justify="left" if n == 0 else "right")
    for cells in table_cells(table):
        grid.add_row(*(Text(c) for c in cells))
    return Group(grid, *(Text(note, style="dim") for note in table_notes(table)))
