"""Native model work as jobs in child processes: one runner, one protocol, for the TUI and the CLI.

Every job that runs native model code (llama.cpp, torch) runs in a child process, so a crash there
(a segfault in a kernel, a driver abort, the OOM killer) ends the job with an error naming the signal,
never the workbench or the command that started it.

A job is a function `fn(ctx, **args) -> dict` named by `"module:function"`. The parent starts
`python -m stillroom.core.jobs SPEC` (a fresh interpreter: see `Job.start`) and speaks JSON lines:

    child → parent (stdout)   {"event": "TokenStreamed", ...}   engine events, tokens coalesced
                              {"result": {...}}                  a request's (or the job's) result
                              {"error": {...}}                   a request's (or the job's) failure
    parent → child (stdin)    stop                               cancel the work in progress
                              {"request": {...}}                 one more request (session jobs)
                              (end of input)                     finish: the parent quit or is done

A one-shot job (training, evaluation, export) does its work and returns its result. A session job
(the teacher behind generation, a chat model) loads its model once and answers requests from
`ctx.requests()` until its input ends, replying to each with `ctx.reply(result)`; `stop` cancels the
request in progress and the model stays loaded. Errors the user can fix come back as the same
`StillroomError` class with the same message; a child that dies without a word becomes `JobCrashed`,
which names the signal and what to try.

Nothing here imports torch, llama_cpp, textual or rich.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from . import events as ev
from .errors import StillroomError

TOKEN_INTERVAL = 0.05        # seconds between coalesced token events: ~20 screen updates a second


class JobFailed(StillroomError):
    """A job failed with something other than a StillroomError (its traceback is in the job's log)."""


class JobCrashed(JobFailed):
    """The job's process died without reporting a result: killed by a signal or exited early."""

    def __init__(self, message: str, remedy: str = "", *, signal_name: str = ""):
        super().__init__(message, remedy)
        self.signal_name = signal_name


# A crash inside llama.cpp has one known cause with a setting to fix it (see backends/llamacpp_load).
LLAMACPP_CRASH_HINT = ('if it crashed inside llama.cpp, set teacher.cpu_repack = "off" in stillroom.toml '
                       '(or lower teacher.n_gpu_layers)')


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


def jsonable(obj) -> dict:
    """A result dataclass as JSON-friendly values (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(obj).items()}


def load_function(spec: str) -> Callable:
    """The function named by "package.module:function"."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"{spec!r}: expected 'module:function'")
    return getattr(importlib.import_module(module), name)


def signal_name(returncode: int | None) -> str:
    if returncode is None or returncode >= 0:
        return ""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


# ---------------------------------------------------------------- the parent's side

class Job:
    """One job in a child process. `run()` a one-shot job; `call(request)` a session job, repeatedly;
    `stop()` from any thread cancels the work in progress; `close()` ends the process.

    `what` names the job in messages ("the teacher", "training"); `crash_hint` is what to try when it
    dies from a signal. Events reach `on_event` in the calling thread, in order.
    """

    def __init__(self, target: str, args: Optional[dict] = None, *, what: str = "the job",
                 log_path: Path | str, crash_hint: str = "", nice: int = 5,
                 python: str = sys.executable, env: Optional[dict] = None):
        self.target = target
        self.args = dict(args or {})
        self.what = what
        self.log_path = Path(log_path)
        self.crash_hint = crash_hint
        self.nice = nice
        self.python = python
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.result: Optional[dict] = None
        self.error: Optional[BaseException] = None
        self.stop_requested = False
        self._log = None
        self._write_lock = threading.Lock()
        self.turn = threading.Lock()     # threads sharing one session take turns: `with job.turn: job.call(…)`

    # -------------------------------------------------------------- process
    def start(self) -> "Job":
        """Start the child: a fresh interpreter, never a fork of this one.

        Why not fork: the workbench runs threads (Textual's, workers), and torch or llama.cpp may have
        started OpenMP thread teams; a forked child inherits their locks in whatever state they were,
        and OpenMP's runtime is known to hang after a fork. A fresh interpreter inherits nothing but
        its arguments and environment, and behaves the same on Linux and macOS. The child gets this
        process's `sys.path`, so a job (or a test's model factory) importable here is importable there.
        """
        if self.proc is not None:
            return self
        spec = json.dumps({"target": self.target, "args": self.args}, default=str)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] +
                                            ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self.proc = subprocess.Popen([self.python, "-m", "stillroom.core.jobs", spec, "--nice", str(self.nice)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
                                     text=True, encoding="utf-8", bufsize=1)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Cancel the work in progress (the child checks its cancel event and ends that work cleanly)."""
        self.stop_requested = True
        self._write("stop")

    def close(self, timeout: float = 10.0) -> None:
        """End the child: close its input (it finishes and exits), then kill it if it does not."""
        if self.proc is None:
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        self._close_log()

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

    def __enter__(self) -> "Job":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- work
    def run(self, on_event: Callable[[ev.Event], None] = ev.ignore) -> dict:
        """A one-shot job: start it, forward every event, return its result (or raise its failure)."""
        self.start()
        for event in self.events():
            on_event(event)
        self.raise_error()
        return self.result or {}

    def call(self, request: dict, on_event: Callable[[ev.Event], None] = ev.ignore) -> dict:
        """A session job: send one request, forward its events, return its result (or raise)."""
        self.start()
        self.result, self.error, self.stop_requested = None, None, False
        if not self._write(json.dumps({"request": request}, default=str)):
            self.error = self._crashed()
        else:
            for event in self.events(until_result=True):
                on_event(event)
        self.raise_error()
        return self.result or {}

    def events(self, until_result: bool = False) -> Iterator[ev.Event]:
        """Events as the child reports them, until it exits (or, with `until_result`, until the next
        result or error). Afterwards `result` holds the result or `error` the failure."""
        assert self.proc is not None and self.proc.stdout is not None, "start() first"
        for line in self.proc.stdout:
            data = _parse(line)
            if data is None:
                continue
            if "result" in data:
                self.result = data["result"]
            elif "error" in data:
                self.error = self._error_from(data["error"])
            else:
                event = event_from_json(data)
                if event is not None:
                    yield event
                continue
            if until_result:
                return
        self.proc.wait()
        self._close_log()
        if self.result is None and self.error is None:
            self.error = self._crashed()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    # -------------------------------------------------------------- helpers
    def _write(self, line: str) -> bool:
        if self.proc is None or self.proc.stdin is None:
            return False
        with self._write_lock:
            try:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
                return True
            except (OSError, ValueError):
                return False

    def _crashed(self) -> JobCrashed:
        code = self.proc.wait() if self.proc is not None else None
        name = signal_name(code)
        if name:    # the log ends in the crash's stack trace (faulthandler): named, not quoted
            message = f"the {self.what} process crashed ({name})"
        else:
            message = f"the {self.what} process ended with exit code {code} before reporting a result" \
                      + _log_tail(self.log_path)
        remedy = "; ".join(x for x in (self.crash_hint if name else "", f"the log is in {self.log_path}") if x)
        return JobCrashed(message, remedy, signal_name=name)

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
        return JobFailed(f"{self.what} failed with {data.get('class', 'an error')}: {message}",
                         remedy or f"the full traceback is in {self.log_path}")


def _parse(line: str) -> Optional[dict]:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _log_tail(path: Path, lines: int = 2) -> str:
    try:
        tail = [x for x in path.read_text("utf-8", "replace").splitlines() if x.strip()][-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(tail))[:300] if tail else ""


# ---------------------------------------------------------------- the child's side

class JobContext:
    """What a job function gets: `emit(event)`, the `cancel` event, and for session jobs `requests()`
    and `reply(result)`."""

    def __init__(self, send: Callable[[dict], None], interval: float = TOKEN_INTERVAL):
        self._send = send
        self.cancel = threading.Event()
        self._requests: "queue.Queue[Optional[dict]]" = queue.Queue()
        self._interval = interval
        self._tokens: Optional[dict] = None        # coalesced TokenStreamed not yet sent
        self._last_flush = 0.0
        self._lock = threading.Lock()

    def emit(self, event: ev.Event) -> None:
        """Send an engine event. Tokens of one stream are merged and sent at most every `interval`
        seconds (and before any other event), so a fast model cannot flood the pipe or the screen."""
        with self._lock:
            if isinstance(event, ev.TokenStreamed):
                key = (event.source, event.purpose, event.index)
                if self._tokens is not None and self._tokens["key"] != key:
                    self._flush()
                if self._tokens is None:
                    self._tokens = {"key": key, "event": event, "text": [], "tokens": 0}
                self._tokens["text"].append(event.text)
                self._tokens["tokens"] += event.tokens
                if time.monotonic() - self._last_flush >= self._interval:
                    self._flush()
                return
            self._flush()
            self._send(event_to_json(event))

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._tokens is None:
            return
        pending, self._tokens = self._tokens, None
        merged = dataclasses.replace(pending["event"], text="".join(pending["text"]), tokens=pending["tokens"])
        self._send(event_to_json(merged))

    def requests(self) -> Iterator[dict]:
        """Requests as the parent sends them, until its input ends; each starts uncancelled."""
        while True:
            request = self._requests.get()
            if request is None:
                return
            self.cancel.clear()
            yield request

    def reply(self, result: dict) -> None:
        self.flush()
        self._send({"result": result})

    def fail(self, exc: BaseException) -> None:
        self.flush()
        self._send(_error_json(exc))

    # the stdin listener's side
    def _listen(self, lines) -> None:
        for line in lines:
            line = line.strip()
            if line == "stop":
                self.cancel.set()
            elif line.startswith("{"):
                data = _parse(line)
                if data is not None and isinstance(data.get("request"), dict):
                    self._requests.put(data["request"])
        self.cancel.set()                 # input closed: the parent quit or is done
        self._requests.put(None)


def _error_json(exc: BaseException) -> dict:
    return {"error": {"class": type(exc).__name__, "message": str(exc), "remedy": getattr(exc, "remedy", ""),
                      "user_error": isinstance(exc, StillroomError)}}


def serve_session(ctx: JobContext, handle: Callable[[dict], dict]) -> dict:
    """The loop of a session job: `handle(request)` for each request, its result or failure replied."""
    import traceback
    for request in ctx.requests():
        try:
            ctx.reply(handle(request))
        except Exception as exc:  # noqa: BLE001 - reported to the parent; the session goes on
            traceback.print_exc()
            ctx.fail(exc)
    return {}


def main(argv: list[str]) -> int:
    """The child: run the job named in `argv[0]` speaking the protocol on stdout; returns the exit code.

    The protocol owns the real stdout; anything a library prints goes to stderr (the job's log)."""
    import faulthandler
    import traceback
    faulthandler.enable()            # a native crash leaves its Python stack in the job's log
    # The job shares its parent's process group, so a kill of the group ends both; Ctrl-C in a terminal
    # reaches the whole group too, and the parent turns it into a `stop` line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = json.loads(argv[0])
    nice = int(argv[argv.index("--nice") + 1]) if "--nice" in argv else 0
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
                ctx.cancel.set()          # the parent is gone: stop the way a cancel stops

    ctx = JobContext(send)
    threading.Thread(target=ctx._listen, args=(sys.stdin,), name="job-input", daemon=True).start()
    if nice and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError:
            pass
    try:
        result = load_function(spec["target"])(ctx, **spec.get("args", {}))
        ctx.reply(result or {})
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
        traceback.print_exc()
        ctx.fail(exc)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
