"""Small job functions for the runner's tests; jobs import them by name ("job_functions:…")."""
import os
import signal
import time

from stillroom.core import events as ev
from stillroom.core.errors import DataError
from stillroom.core.jobs import serve_session


def counting(ctx, n: int, tokens: int = 0):
    """One-shot: n Status events, then `tokens` single-token events of one stream; returns n."""
    for i in range(n):
        ctx.emit(ev.Status(f"step {i}"))
    for i in range(tokens):
        ctx.emit(ev.TokenStreamed(f"t{i} ", source="model", purpose="chat"))
    return {"n": n}


def echo_session(ctx):
    """Session: replies {"echo": request}; a request {"wait": true} waits until it is stopped."""
    def handle(request):
        if request.get("wait"):
            ctx.emit(ev.Status("waiting"))
            while not ctx.cancel.wait(0.01):
                pass
            return {"stopped": True}
        if request.get("bad"):
            raise DataError("seeds.jsonl line 3: expected a JSON object", "fix the line")
        return {"echo": request}
    return serve_session(ctx, handle)


def crashing(ctx, after: int = 2):
    for i in range(after):
        ctx.emit(ev.Status(f"step {i}"))
    time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGSEGV)


def exiting(ctx):
    os._exit(3)


def failing(ctx):
    raise ZeroDivisionError("not a user error")
