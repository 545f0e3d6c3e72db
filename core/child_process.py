"""Long engine jobs (training, evaluation) in a child process, so the caller (the TUI) stays responsive
while torch and llama.cpp use every core.

The parent starts `python -m stillroom.core.<job>_process ARGS --nice N` and reads one JSON object a line
from its stdout: engine events (`{"event": "TrainStep", ...}`), then either `{"result": {...}}` or
`{"error": {...}}`. It stops the job by writing `stop` to the child's stdin; the child also stops when
its stdin closes (the parent quit or crashed). Either way the engine's cancel event is set, so the job
ends the way a cancelled engine call ends (training saves a checkpoint, evaluation writes nothing).
Errors the user can fix come back as the same `StillroomError` class with the same message.

Why a process and not a thread: the engines' Python loops hold the GIL between native kernels, and
torch takes every core; a thread worker made the interface stutter on a two-core laptop. The child runs
at a lower scheduling priority, and a crash in native code cannot take the interface down with it.

A job module subclasses `ChildProcess` (its `module`, `what`, `log_name` and `arguments()`) for the
parent's side, and calls `serve(job)` from its `__main__` for the child's side. Nothing here imports torch.
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


class ProcessFailed(StillroomError):
    """A child process failed with something other than a StillroomError, or died without a word."""


class ChildProcess:
    """One job in a child process; iterate `events()` in a thread, call `stop()` from anywhere."""

    module = ""                 # the job's module, run with `python -m`
    what = "the job"            # for messages: "training", "evaluation"
    log_name = ".child-process.log"

    def __init__(self, project_root: Path | str, *, nice: int = 5, python: str = sys.executable,
                 env: Optional[dict] = None):
        self.project_root = Path(project_root)
        self.nice = nice
        self.python = python
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.result: Optional[dict] = None
        self.error: Optional[BaseException] = None
        self.stop_requested = False
        self._log = None

    def arguments(self) -> list[str]:
        """The job's command-line arguments (after the module name)."""
        return [str(self.project_root)]

    @property
    def log_path(self) -> Path:
        return self.project_root / "runs" / self.log_name

    def start(self) -> "ChildProcess":
        args = [self.python, "-m", self.module, *self.arguments(), "--nice", str(self.nice)]
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
        """Ask the job to stop at its next cancel check."""
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

        Afterwards `result` holds the job's result (as JSON) or `error` the failure; `raise_error` raises it."""
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
                self.error = self._error_from(data["error"])
            else:
                event = event_from_json(data)
                if event is not None:
                    yield event
        code = self.proc.wait()
        self._close_log()
        if self.result is None and self.error is None:
            self.error = ProcessFailed(
                f"the {self.what} process ended with exit code {code} before reporting a result"
                + _log_tail(self.log_path), f"the full log is in {self.log_path}")

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

    def _error_from(self, data: dict) -> BaseException:
        message = str(data.get("message", f"{self.what} failed"))
        remedy = str(data.get("remedy", ""))
        if data.get("user_error"):
            from . import errors
            cls = getattr(errors, str(data.get("class", "")), None)
            if not (isinstance(cls, type) and issubclass(cls, StillroomError)):
                cls = StillroomError
            return cls(message, remedy)
        if data.get("class") == "MemoryError":
            return MemoryError(message)
        return ProcessFailed(f"{self.what} failed with {data.get('class', 'an error')}: {message}",
                             remedy or f"the full traceback is in {self.log_path}")


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = [x for x in path.read_text("utf-8", "replace").splitlines() if x.strip()][-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(tail))[:400] if tail else ""


# ---------------------------------------------------------------- the child's side

def serve(job: Callable[[ev.EventSink, threading.Event], dict], nice: int = 0) -> int:
    """Run `job(on_event, cancel)` speaking the protocol on stdout; returns the exit code.

    The protocol owns the real stdout; anything a library prints goes to stderr (the log) instead."""
    import traceback
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    lock = threading.Lock()
    cancel = threading.Event()

    def send(obj: dict) -> None:
        with lock:
            try:
                out.write(json.dumps(obj, default=str) + "\n")
                out.flush()
            except (OSError, ValueError):
                cancel.set()              # the parent is gone: stop the way a cancel stops

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                cancel.set()
        cancel.set()                      # stdin closed: the parent quit

    threading.Thread(target=listen, name="stop-listener", daemon=True).start()
    if nice and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError:
            pass
    try:
        send({"result": job(lambda e: send(event_to_json(e)), cancel)})
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
        traceback.print_exc()
        send({"error": {"class": type(exc).__name__, "message": str(exc),
                        "remedy": getattr(exc, "remedy", ""), "user_error": isinstance(exc, StillroomError)}})
        return 1


def jsonable(obj) -> dict:
    """A result dataclass as JSON-friendly values (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(obj).items()}
