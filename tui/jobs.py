"""What the model screens (Train, Compare, Chat, Export) share: the loaded teacher, the run the user
picked, elapsed-time formatting, token batching, and telling the user when a long job is done."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

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


_teacher_lock = threading.Lock()


def shared_teacher(app: App):
    """The project's teacher, loaded once and shared with generation (call from a worker thread)."""
    with _teacher_lock:
        teacher = getattr(app, "_teacher", None)
        if teacher is None:
            teacher = app.teacher_factory(app.project)
            app._teacher = teacher
        return teacher


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


class TokenBatcher:
    """An `on_token` callback that hands text on at most every `interval` seconds (from a worker)."""

    def __init__(self, post: Callable[[str], None], interval: float = 0.05):
        self.post = post
        self.interval = interval
        self.buffer: list[str] = []
        self.last = 0.0
        self.first: Optional[float] = None
        self.pieces = 0

    def __call__(self, text: str) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.pieces += 1
        self.buffer.append(text)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.buffer:
            text, self.buffer = "".join(self.buffer), []
            self.post(text)
