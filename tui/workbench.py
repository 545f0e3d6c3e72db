"""The session's state, in one object the app owns and every screen reads (`self.app.workbench`): the open
project and its lock, how the teacher is built, the run the user picked, and the teacher's generation
job with its state.

The generation job lives here rather than on a screen because it outlives screens: it keeps the
teacher loaded between a pause and a resume, and closing the project ends it. It runs in a child
process (core.job_kinds.generation_job); its events and its end reach the app as `JobEvent("generate")`
and `JobEnded("generate")` messages (tui.bridge), which the app hands to the screens.
"""
from __future__ import annotations

import threading
from enum import Enum
from typing import TYPE_CHECKING, Callable, Optional

from stillroom.core.jobs import JobCrashed
from stillroom.tui.bridge import run_job

if TYPE_CHECKING:
    from textual.message_pump import MessagePump
    from textual.worker import Worker

    from stillroom.core.lock import ProjectLock
    from stillroom.core.project import Project


class Generation(Enum):
    """Where the teacher's generation stands: IDLE until started; RUNNING; PAUSING (it stops after the
    current token and the teacher stays loaded) or STOPPING (the teacher is unloaded after) until the
    job's end has been handled."""
    IDLE = "idle"
    RUNNING = "running"
    PAUSING = "pausing"
    STOPPING = "stopping"


class Workbench:
    """What one workbench session holds. `node` (the app) receives the generation job's messages;
    `show_job(text)` puts a line about the running job in every screen's header."""

    def __init__(self, node: "MessagePump", *, teacher_factory: str | None = None,
                 show_job: Callable[[str], None] = lambda text: None) -> None:
        self.node = node
        # "module:function" that builds the teacher from the Project, in each job's child process;
        # None: the project's configured teacher.
        self.teacher_factory = teacher_factory
        self.project: Optional["Project"] = None
        self.lock: Optional["ProjectLock"] = None
        self.selected_run: str | None = None       # the run Compare, Chat and Export show
        self.generation = Generation.IDLE
        self.show_job = show_job
        self._teacher = None                       # the teacher's generation job, once started
        self._teacher_lock = threading.Lock()
        self._worker: Optional["Worker"] = None

    # ------------------------------------------------------------------ project
    def open(self, project: "Project", lock: "ProjectLock") -> None:
        self.project, self.lock = project, lock

    def close(self) -> None:
        """End the teacher's process and release the lock (generation must have ended)."""
        self.unload_teacher()
        if self.lock is not None:
            self.lock.release()
        self.project, self.lock, self.selected_run = None, None, None

    # ------------------------------------------------------------------ generation
    @property
    def generating(self) -> bool:
        """From start_generation until its JobEnded is handled (the worker may outlive that by a moment)."""
        return self.generation is not Generation.IDLE

    def teacher_job(self):
        """The teacher's generation job (core.job_kinds.generation_job), started on first use."""
        with self._teacher_lock:
            if self._teacher is None:
                from stillroom.core.job_kinds import generation_job
                self._teacher = generation_job(self.project.root, teacher_factory=self.teacher_factory,
                                               spare_core=True)
            return self._teacher

    def unload_teacher(self) -> None:
        """End the teacher's process (it finishes what it was writing first)."""
        with self._teacher_lock:
            job, self._teacher = self._teacher, None
        if job is not None:
            job.close()

    def start_generation(self, target: int) -> bool:
        """Generate until `target` rows are kept; False if generation is running or no project is open."""
        if self.generating or self.project is None:
            return False
        job = self.teacher_job()
        self.generation = Generation.RUNNING
        self.show_job("generating")
        self._worker = run_job(self.node, "generate", lambda on_event: job.call({"target": target}, on_event))
        return True

    def pause_generation(self) -> None:
        """Stop after the current token; the teacher stays loaded so resuming is instant."""
        if self.generating:
            self._teacher.stop()
            if self.generation is Generation.RUNNING:      # a stop asked for already still unloads
                self.generation = Generation.PAUSING
            self.show_job("pausing")

    def stop_generation(self) -> None:
        """Stop and unload the teacher."""
        if self.generating:
            self._teacher.stop()
            self.generation = Generation.STOPPING
            self.show_job("stopping")
        else:
            self.unload_teacher()

    async def stop_generation_and_wait(self) -> None:
        if self.generating:
            worker = self._worker
            self.stop_generation()
            await worker.wait()
            self._worker = None
        self.unload_teacher()

    def generation_ended(self, error: BaseException | None) -> None:
        """The job's end was handled: a stop or a crashed process unloads the teacher."""
        stopping = self.generation is Generation.STOPPING
        self.generation, self._worker = Generation.IDLE, None
        if stopping or isinstance(error, JobCrashed):
            self.unload_teacher()
