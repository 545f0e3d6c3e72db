"""Training in a child process, so the caller (the TUI) stays responsive while torch uses every core.

The parent starts `python -m stillroom.core.train_process PROJECT [--resume RUN] [--overrides JSON]`
and reads one JSON object a line from its stdout: engine events (`{"event": "TrainStep", ...}`), then
either `{"result": {...}}` or `{"error": {...}}`. It stops the run by writing `stop` to the child's
stdin; the child also stops when its stdin closes (the parent quit or crashed). Either way the
engine's cancel event is set, so the trainer saves a checkpoint and the run can be resumed.

Why a process and not a thread: Trainer's Python loop holds the GIL between torch kernels, and torch
takes every core; a thread worker made the interface stutter on a two-core laptop. The child runs at a
lower scheduling priority, and a crash in native code cannot take the interface down with it.

Nothing here imports torch: the child imports it through `core.train`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional

from . import events as ev
from .errors import StillroomError

LOG_NAME = ".train-process.log"


def event_to_json(event: ev.Event) -> dict:
    return {"event": type(event).__name__, **dataclasses.asdict(event)}


def event_from_json(data: dict) -> Optional[ev.Event]:
    cls = getattr(ev, str(data.get("event", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, ev.Event)):
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    if "paths" in values and isinstance(values["paths"], list):
        values["paths"] = tuple(values["paths"])
    try:
        return cls(**values)
    except TypeError:
        return None


class TrainProcessError(StillroomError):
    """The training process failed."""


class TrainProcess:
    """One training run in a child process; iterate `events()` in a thread, call `stop()` from anywhere."""

    def __init__(self, project_root: Path | str, *, resume: Optional[str] = None,
                 overrides: Optional[dict] = None, nice: int = 5, python: str = sys.executable,
                 env: Optional[dict] = None):
        self.project_root = Path(project_root)
        self.resume = resume
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.nice = nice
        self.python = python
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.result: Optional[dict] = None
        self.error: Optional[BaseException] = None
        self.stop_requested = False
        self._log = None

    @property
    def log_path(self) -> Path:
        return self.project_root / "runs" / LOG_NAME

    def start(self) -> "TrainProcess":
        args = [self.python, "-m", "stillroom.core.train_process", str(self.project_root),
                "--nice", str(self.nice)]
        if self.resume:
            args += ["--resume", str(self.resume)]
        if self.overrides:
            args += ["--overrides", json.dumps(self.overrides)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=env, text=True, encoding="utf-8", bufsize=1,
                                     start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Ask the run to stop after the current step (it saves a checkpoint first)."""
        self.stop_requested = True
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def kill(self) -> None:
        if self.running:
            self.proc.kill()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def events(self) -> Iterator[ev.Event]:
        """Engine events as the child reports them; ends when the child exits.

        Afterwards `result` holds the TrainResult fields (as JSON) or `error` the failure; `raise_error`
        raises it."""
        assert self.proc is not None and self.proc.stdout is not None, "start() first"
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if "result" in data:
                self.result = data["result"]
            elif "error" in data:
                self.error = _error_from(data["error"])
            else:
                event = event_from_json(data)
                if event is not None:
                    yield event
        code = self.proc.wait()
        self._close_log()
        if self.result is None and self.error is None:
            self.error = TrainProcessError(
                f"the training process ended with exit code {code} before reporting a result"
                + _log_tail(self.log_path),
                f"the full log is in {self.log_path}")

    def run(self, on_event: Callable[[ev.Event], None] = ev.ignore) -> dict:
        """Start (if needed), forward every event, and return the result (or raise the failure)."""
        if self.proc is None:
            self.start()
        for event in self.events():
            on_event(event)
        self.raise_error()
        return self.result or {}

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = [x for x in path.read_text("utf-8", "replace").splitlines() if x.strip()][-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(tail))[:400] if tail else ""


def _error_from(data: dict) -> BaseException:
    message = str(data.get("message", "training failed"))
    remedy = str(data.get("remedy", ""))
    if data.get("user_error"):
        from . import errors
        cls = getattr(errors, str(data.get("class", "")), None)
        if not (isinstance(cls, type) and issubclass(cls, StillroomError)):
            cls = StillroomError
        return cls(message, remedy)
    if data.get("class") == "MemoryError":
        return MemoryError(message)
    return TrainProcessError(f"training failed with {data.get('class', 'an error')}: {message}",
                             remedy or "the full traceback is in runs/.train-process.log")


# ---------------------------------------------------------------- the child

def _child(argv: list[str]) -> int:
    import argparse
    import traceback
    parser = argparse.ArgumentParser(prog="python -m stillroom.core.train_process")
    parser.add_argument("project")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--overrides", default=None)
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)

    # The protocol owns the real stdout; anything a library prints goes to the log instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    lock = threading.Lock()

    def send(obj: dict) -> None:
        with lock:
            try:
                out.write(json.dumps(obj, default=str) + "\n")
                out.flush()
            except (OSError, ValueError):
                cancel.set()              # the parent is gone: stop and keep a checkpoint

    cancel = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                cancel.set()
        cancel.set()                      # stdin closed: the parent quit

    threading.Thread(target=listen, name="stop-listener", daemon=True).start()
    if args.nice and hasattr(os, "nice"):
        try:
            os.nice(args.nice)
        except OSError:
            pass
    try:
        from .project import Project
        from .train import train
        project = Project.open(args.project)
        overrides = json.loads(args.overrides) if args.overrides else None
        result = train(project, on_event=lambda e: send(event_to_json(e)), cancel=cancel,
                       resume=args.resume or None, overrides=overrides)
        send({"result": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in dataclasses.asdict(result).items()}})
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
        traceback.print_exc()
        send({"error": {"class": type(exc).__name__, "message": str(exc),
                        "remedy": getattr(exc, "remedy", ""), "user_error": isinstance(exc, StillroomError)}})
        return 1


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
