"""The run pickers of the Compare and Chat screens: a Select of the project's finished runs, newest first."""
from __future__ import annotations

from textual.widgets import Select


def finished_runs(project) -> list:
    """The runs that have weights (core.runs.RunSummary), oldest first; none when they cannot be listed."""
    from stillroom.core.runs import list_runs
    try:
        return [r for r in list_runs(project) if r.output_dir is not None]
    except Exception:  # noqa: BLE001 - a damaged run folder must not break the screen
        return []


def first_of(ids: list[str], *candidates: str | None) -> str | None:
    """The first of `candidates` that is one of `ids` (None when none is)."""
    return next((c for c in candidates if c is not None and c in ids), None)


def fill(screen, select: Select, options: list[tuple[str, str]], value: str | None, *,
         prompt: str | None = None) -> None:
    """Give `select` these options (and prompt) and show `value`, posting no Changed: the screen shows
    the chosen run itself."""
    with screen.prevent(Select.Changed):
        if prompt is not None:
            select.prompt = prompt
        select.set_options(options)
        if value is not None:
            select.value = value
