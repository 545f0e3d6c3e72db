"""What the model screens (Train, Compare, Chat, Export) share: the run the user picked, elapsed-time
formatting, and telling the user when a long job is done."""
from __future__ import annotations

from textual.app import App


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "--:--"
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_float(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def select_run(app: App, run_id: str | None) -> None:
    """Make `run_id` the run that Compare, Chat and Export show, on every screen already built."""
    app.selected_run = run_id
    for screen in list(getattr(app, "screens_by_mode", {}).values()):
        if hasattr(screen, "on_run_selected"):
            screen.on_run_selected(run_id)


def selected_run(app: App) -> str | None:
    return getattr(app, "selected_run", None)


def job_done(app: App, screen, message: str, *, title: str, severity: str = "information") -> None:
    """A notification for a finished long job; it is the only sign when the user is on another screen,
    so it stays longer there."""
    away = app.screen is not screen
    app.notify(message, title=title, severity=severity, timeout=10 if away else 5)
