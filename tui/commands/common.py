"""Shared pieces of CLI commands: the project and run arguments, the columns of a file of examples,
Ctrl-C as a clean stop, the console,
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


def add_column_arguments(parser, what: str) -> None:
    """--input-column, --output-column and --system-column of a file of examples."""
    parser.add_argument("--input-column", default=None,
                        help=f"{what}: column with the user text (default: guessed from a CSV header, else input)")
    parser.add_argument("--output-column", default=None,
                        help=f"{what}: column with the answer (default: guessed from a CSV header, else output)")
    parser.add_argument("--system-column", default="", help=f"{what}: optional column with a system message")


def column_options(args, path: Path) -> tuple[dict, str]:
    """The columns to read `path` by: as given; when neither input nor output column is given, guessed
    from a CSV's header (text,label; question,answer; any two columns), with a line saying so."""
    given = {key: value for key, value in (("input_column", args.input_column),
                                           ("output_column", args.output_column)) if value}
    if given:
        return {"input_column": "input", "output_column": "output", **given}, ""
    from stillroom.core.importing import guess_columns
    guess = guess_columns(path)
    if not guess:
        return {}, ""
    return guess, (f"columns: {guess['input_column']} is the input, {guess['output_column']} the answer (guessed "
                   f"from the header; choose others with --input-column and --output-column)")

