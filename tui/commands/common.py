"""Shared pieces of CLI commands: the project and run arguments, Ctrl-C as a clean stop, the console,
a rate limiter for progress."""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def add_project_and_run(parser) -> None:
    """The project folder and --run (default: the latest run)."""
    parser.add_argument("path", type=Path, help="project folder")
    parser.add_argument("--run", dest="run_id", default=None, metavar="RUN", help="run id (default: the latest run)")


@contextmanager
def stop_on_ctrl_c(on_stop=None):
    """First Ctrl-C sets the cancel event (the engine stops cleanly and saves) and calls `on_stop()`
    (e.g. a job's stop); a second one aborts."""
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        if on_stop is not None:
            on_stop()
        from rich.console import Console
        Console(stderr=True).print("[yellow]stopping after the current step… (Ctrl-C again to abort)[/]")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
    try:
        yield cancel
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


def console(stderr: bool = False):
    from rich.console import Console
    return Console(stderr=stderr, highlight=False)


class Ticker:
    """Rate limiter for progress refreshes."""

    def __init__(self, every: float = 0.1):
        self.every = every
        self.last = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            return True
        return False
