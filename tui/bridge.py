"""The one seam between engine jobs and the workbench: a job runs in a thread worker that waits on its
child process; its engine events arrive as `JobEvent` messages and its end as one `JobEnded`.

Tokens arrive already coalesced by the job (core.jobs), so screens take each event as it comes; a
newer progress event replaces an older one still waiting in the queue. A screen that runs a job names
its handlers (`run_job(..., on_event=, on_end=)`) and the screen's base hands each message to them
(`deliver`). Errors never escape the worker: they travel in `JobEnded.error`, and the app shows them in
one dialog (see the app's `on_job_ended`) unless the job's handler took the message.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

from textual.message import Message
from textual.worker import Worker

from stillroom.core import events as ev

def supersedes(new: ev.Event, old: ev.Event) -> bool:
    """Whether `new` makes `old` (still waiting in the queue) not worth drawing: counters of the same
    kind; a training step only when neither carries a loss (every loss is a point on the chart)."""
    if type(new) is not type(old):
        return False
    if isinstance(new, ev.GenerationProgress):
        return True
    if isinstance(new, ev.EvalProgress):
        return new.model == old.model
    if isinstance(new, ev.ExportProgress):
        return new.stage == old.stage
    if isinstance(new, ev.TrainStep):
        return new.loss is None and old.loss is None
    return False


class JobEvent(Message):
    """An engine event from the job named `job`, for `handler` (see run_job)."""

    def __init__(self, job: str, event: ev.Event, handler: Optional[Callable[[ev.Event], None]] = None) -> None:
        super().__init__()
        self.job = job
        self.event = event
        self.handler = handler

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobEvent) and message.job == self.job and supersedes(self.event, message.event)


class JobEnded(Message):
    """The job named `job` finished (`result`), failed or crashed (`error`), for `handler` (see run_job)."""

    def __init__(self, job: str, result: Optional[dict], error: Optional[BaseException] = None,
                 stopped: bool = False, handler: Optional[Callable[["JobEnded"], None]] = None) -> None:
        super().__init__()
        self.job = job
        self.result = result
        self.error = error
        self.stopped = stopped
        self.handler = handler


def run_job(node, name: str, work: Callable[[Callable[[ev.Event], None]], dict], *,
            on_event: Optional[Callable[[ev.Event], None]] = None,
            on_end: Optional[Callable[[JobEnded], None]] = None,
            stopped: Callable[[], bool] = lambda: False) -> Worker:
    """Run `work(on_event)` (a job's `run` or `call`) in a thread worker of `node` (a screen or the app).

    Every event becomes a `JobEvent(name, …)` posted to `node`; the end, one `JobEnded(name, …)`. On
    `node`'s thread, `deliver` hands them to `on_event(event)` and `on_end(message)`; without handlers
    `node` tells them apart by `name`.
    """
    def body() -> None:
        try:
            result = work(lambda event: node.post_message(JobEvent(name, event, on_event)))
        except BaseException as error:  # noqa: BLE001 - delivered as a message, shown once
            node.post_message(JobEnded(name, None, error, stopped(), on_end))
        else:
            node.post_message(JobEnded(name, result, None, stopped(), on_end))
    return node.run_worker(body, name=name, group=name, thread=True, exit_on_error=False)


def deliver(message: Union[JobEvent, JobEnded]) -> bool:
    """Hand a job's message to the handler its run_job named, where it stops; False if it names none."""
    if message.handler is None:
        return False
    message.stop()
    message.handler(message.event if isinstance(message, JobEvent) else message)
    return True


def job_done(screen, message: str, *, title: str, severity: str = "information") -> None:
    """Tell the user that the long job `screen` ran has ended; the notification is the only sign when
    they are on another screen, so it stays longer there."""
    app = screen.app
    away = app.screen is not screen
    app.notify(message, title=title, severity=severity, timeout=10 if away else 5)
