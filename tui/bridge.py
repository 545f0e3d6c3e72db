"""The one seam between engine jobs and the workbench: a job runs in a thread worker that waits on its
child process; its engine events arrive as `JobEvent` messages and its end as one `JobEnded`.

Tokens arrive already coalesced by the job (core.jobs), so screens take each event as it comes; a
newer progress event replaces an older one still waiting in the queue. Errors never escape the
worker: they travel in `JobEnded.error`, and the app shows them in one dialog (see the app's
`on_job_ended`) unless the screen that ran the job handles the message itself.
"""
from __future__ import annotations

from typing import Callable, Optional

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
    """An engine event from the job named `job`."""

    def __init__(self, job: str, event: ev.Event) -> None:
        super().__init__()
        self.job = job
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobEvent) and message.job == self.job and supersedes(self.event, message.event)


class JobEnded(Message):
    """The job named `job` finished (`result`), failed or crashed (`error`)."""

    def __init__(self, job: str, result: Optional[dict], error: Optional[BaseException] = None,
                 stopped: bool = False) -> None:
        super().__init__()
        self.job = job
        self.result = result
        self.error = error
        self.stopped = stopped


def run_job(node, name: str, work: Callable[[Callable[[ev.Event], None]], dict], *,
            stopped: Callable[[], bool] = lambda: False) -> Worker:
    """Run `work(on_event)` (a job's `run` or `call`) in a thread worker of `node` (a screen or the app).

    Every event becomes a `JobEvent(name, …)` posted to `node`; the end, one `JobEnded(name, …)`.
    """
    def body() -> None:
        try:
            result = work(lambda event: node.post_message(JobEvent(name, event)))
        except BaseException as error:  # noqa: BLE001 - delivered as a message, shown once
            node.post_message(JobEnded(name, None, error, stopped()))
        else:
            node.post_message(JobEnded(name, result, None, stopped()))
    return node.run_worker(body, name=name, group=name, thread=True, exit_on_error=False)


def job_done(screen, message: str, *, title: str, severity: str = "information") -> None:
    """Tell the user that the long job `screen` ran has ended; the notification is the only sign when
    they are on another screen, so it stays longer there."""
    app = screen.app
    away = app.screen is not screen
    app.notify(message, title=title, severity=severity, timeout=10 if away else 5)
