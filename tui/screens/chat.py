"""Chat: one prompt box; the teacher and the tuned student (and, on ctrl+b, the base student) answer side
by side as they stream, each with its time to first token and tokens per second underneath.

The models run in two chat jobs (core.job_kinds.chat_job): the teacher in one child process, the
students (tuned and base) in another, so a crash in either ends that column's answer, never the app.
Each job loads its models on the first message and keeps them while the screen shows the same run.
"""
from __future__ import annotations

import dataclasses
import random
import threading
import time
from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Label, Select, Static

from stillroom.core import chat as chat_core
from stillroom.core import events as ev
from stillroom.core.backends.base import SamplingParams
from stillroom.core.errors import StillroomError
from stillroom.core.jobs import JobCrashed
from stillroom.core.models import ROLE_TITLES
from stillroom.tui.bridge import JobEnded, job_done, run_job
from stillroom.tui.format import fmt_seconds
from stillroom.tui.screens.base import WorkbenchScreen
from stillroom.tui.widgets import run_picker
from stillroom.tui.widgets.chat_column import ChatColumn

NO_RUN = "__base__"


def speed_line(started: float, first: float | None, ended: float, tokens: int) -> str:
    if first is None:
        return f"no tokens · {ended - started:.2f}s"
    ttft = first - started
    rate = tokens / (ended - first) if ended - first > 1e-3 and tokens > 1 else 0.0
    rate_text = f"{rate:.1f} tok/s" if rate else "– tok/s"
    return f"ttft {ttft:.2f}s · {rate_text} · {tokens} tok"


class ChatScreen(WorkbenchScreen):
    DEFAULT_CSS = """
    ChatScreen #chat-top { height: 1; padding: 0 1; margin-top: 1; }
    ChatScreen #chat-top Label { width: auto; padding: 0 1 0 0; }
    ChatScreen #chat-run { width: 40; margin-right: 2; }
    ChatScreen #chat-temperature { width: 7; margin-right: 2; }
    ChatScreen #chat-max-tokens { width: 7; margin-right: 2; }
    ChatScreen #chat-state { width: 1fr; content-align: right middle; color: $text-muted; }
    ChatScreen #chat-cols { height: 1fr; margin-top: 1; }
    ChatScreen #col-base { display: none; }
    ChatScreen.with-base #col-base { display: block; }
    ChatScreen #prompt { margin: 0 1; border: round $primary; height: 3; }
    """
    MODE = "chat"
    LABEL = "Chat"
    BINDINGS = [
        Binding("enter", "send", "Send", show=False),
        Binding("escape", "stop", "Stop / leave box"),
        Binding("ctrl+n", "new", "New conversation"),
        Binding("ctrl+b", "toggle_base", "Base column"),
        Binding("ctrl+s", "settings", "Sampling"),
        Binding("ctrl+r", "pick_run", "Run"),
        Binding("i", "focus_prompt", "Type", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.run_id: str | None = None
        self.conversation: chat_core.Conversation | None = None
        self.chat_jobs: dict = {}                   # "teacher" / "students" -> Job
        self.jobs_lock = threading.Lock()
        self.stopped = threading.Event()             # esc: the answers in progress stop
        self.streaming: set[str] = set()
        self.first_token: dict = {}                 # column -> perf_counter of its first token
        self.sent_at: float | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-top"):
            yield Label("run")
            yield Select([("no run: the untrained student", NO_RUN)], value=NO_RUN, id="chat-run", compact=True,
                         allow_blank=False)
            yield Label("temperature")
            yield Input("0.7", id="chat-temperature", compact=True, type="number")
            yield Label("max tokens")
            yield Input(str(max(64, self.project.config.evaluation.max_tokens)), id="chat-max-tokens",
                        compact=True, type="integer")
            yield Static("", id="chat-state")
        with Horizontal(id="chat-cols"):
            for column in chat_core.COLUMNS:
                yield ChatColumn(column, ROLE_TITLES[column], id=f"col-{column}")
        yield Input("", id="prompt", placeholder="Ask the teacher and the student…  (enter sends, esc stops)")

    def on_mount(self) -> None:
        self.load_runs(self.workbench.selected_run)
        self.set_interval(0.5, self.tick)
        self.query_one("#prompt", Input).focus()

    # ------------------------------------------------------------------ runs
    def load_runs(self, prefer: str | None = None) -> None:
        runs = [r.run_id for r in run_picker.finished_runs(self.project)]
        choice = run_picker.first_of(runs, prefer, self.run_id, runs[-1] if runs else None) or NO_RUN
        options = [(r, r) for r in reversed(runs)] + [("no run: the untrained student", NO_RUN)]
        run_picker.fill(self, self.query_one("#chat-run", Select), options, choice)
        self.use_run(choice)

    def use_run(self, run_id: str) -> None:
        run_id = None if run_id == NO_RUN else run_id
        changed = run_id != self.run_id or self.conversation is None
        self.run_id = run_id
        self.query_one("#col-tuned", ChatColumn).set_title(self.title_of("tuned"), run_id or "")
        if run_id is None and self.has_class("with-base"):
            self.remove_class("with-base")
        if changed:
            self.close_jobs("students")
            self.new_conversation()

    def title_of(self, column: str) -> str:
        """A column's title: without a run the student column is the untrained student."""
        return "student (untrained)" if column == "tuned" and self.run_id is None else ROLE_TITLES[column]

    def on_run_selected(self, run_id: str | None) -> None:
        if self.is_mounted and not self.streaming and run_id and run_id != self.run_id:
            self.load_runs(run_id)

    def on_select_changed(self, event: Select.Changed) -> None:
        value = event.select.value          # the current value: a queued Changed may be stale
        if event.select.id != "chat-run" or event.select.is_blank():
            return
        if (None if value == NO_RUN else str(value)) == self.run_id:
            return
        if self.streaming:
            self.notify("Wait for the answers (or press esc) before switching runs.", severity="warning")
            return
        self.use_run(str(value))
        self.query_one("#prompt", Input).focus()

    def new_conversation(self) -> None:
        from stillroom.core.evaluate import shot_pool
        config = self.project.config
        try:
            pool = shot_pool(self.project, self.project.tests())
        except StillroomError:
            pool = []
        shots = random.Random(config.generation.seed).sample(pool, min(config.generation.few_shot, len(pool)))
        self.conversation = chat_core.Conversation(config.task, shots)
        for column in self.query(ChatColumn):
            column.clear()

    # ------------------------------------------------------------------ sending
    def columns(self) -> list[str]:
        out = ["teacher", "tuned"]
        if self.has_class("with-base") and self.run_id is not None:
            out.append("base")
        return out

    def params(self) -> SamplingParams:
        try:
            temperature = float(self.query_one("#chat-temperature", Input).value)
            max_tokens = int(self.query_one("#chat-max-tokens", Input).value)
        except ValueError:
            raise StillroomError("temperature must be a number and max tokens a whole number",
                                 "fix them in the sampling boxes (ctrl+s)") from None
        if temperature < 0 or max_tokens < 1:
            raise StillroomError("temperature must be at least 0 and max tokens at least 1")
        return SamplingParams(temperature=temperature, top_p=0.95 if temperature > 0 else 1.0,
                              max_tokens=max_tokens, seed=0)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "prompt":
            self.action_send()
        else:
            self.query_one("#prompt", Input).focus()

    def action_send(self) -> None:
        box = self.query_one("#prompt", Input)
        text = box.value.strip()
        if not text:
            return
        if self.streaming:
            self.notify("The models are still answering; esc stops them.", severity="warning")
            return
        try:
            params = self.params()
        except StillroomError as error:
            self.app.show_error(error, "Cannot send")
            return
        box.value = ""
        self.conversation.ask(text)
        self.stopped = threading.Event()
        self.sent_at = time.monotonic()
        request = {"conversation": self.conversation.to_json(), "params": dataclasses.asdict(params)}
        for column in self.columns():
            self.query_one(f"#col-{column}", ChatColumn).begin(text)
            self.streaming.add(column)
            self.first_token.pop(column, None)
            run_job(self, f"chat-{column}",
                    lambda on_event, c=column, stopped=self.stopped: self._ask(c, request, on_event, stopped),
                    on_event=partial(self.column_event, column), on_end=partial(self.column_ended, column))
        self.tick()

    def _job(self, group: str):
        """The chat job of `group` ("teacher" or "students"), started on first use (from a worker)."""
        from stillroom.core.job_kinds import chat_job
        with self.jobs_lock:
            job = self.chat_jobs.get(group)
            if job is None:
                job = chat_job(self.project.root, group, run_id=self.run_id,
                               teacher_factory=self.workbench.teacher_factory if group == "teacher" else None)
                self.chat_jobs[group] = job.start()
            return job

    def _ask(self, column: str, request: dict, on_event, stopped: threading.Event) -> dict:
        """One column's answer (in a worker thread): the tuned and base columns share the students' job
        and take turns there."""
        group = "teacher" if column == "teacher" else "students"
        job = self._job(group)
        with job.turn:
            if stopped.is_set():
                return {"text": "", "finish_reason": "cancelled", "completion_tokens": 0, "started": 0.0}
            started = time.perf_counter()
            try:
                result = job.call({**request, "column": column}, on_event)
            except JobCrashed:
                with self.jobs_lock:          # a dead process: the next message starts a new one
                    if self.chat_jobs.get(group) is job:
                        del self.chat_jobs[group]
                raise
        return {**result, "started": started}

    def close_jobs(self, *groups: str) -> None:
        """End the chat jobs of `groups` (all when none given) without waiting for them."""
        with self.jobs_lock:
            ending = [self.chat_jobs.pop(g) for g in (groups or list(self.chat_jobs)) if g in self.chat_jobs]
        for job in ending:
            job.stop()
            threading.Thread(target=job.close, name="chat-job-close", daemon=True).start()

    # ------------------------------------------------------------------ job events
    def column_event(self, column_name: str, event: ev.Event) -> None:
        column = self.query_one(f"#col-{column_name}", ChatColumn)
        if isinstance(event, ev.TokenStreamed):
            self.first_token.setdefault(column_name, time.perf_counter())
            column.note("")
            column.append(event.text)
        elif isinstance(event, ev.Status):
            column.note(event.message)
        elif isinstance(event, ev.ModelReady):
            column.note("")
            column.set_title(self.title_of(column_name), event.name)

    def column_ended(self, column_name: str, message: JobEnded) -> None:
        column = self.query_one(f"#col-{column_name}", ChatColumn)
        column.note("")
        result = message.result
        if result is not None:
            if self.conversation is not None:
                self.conversation.record(column_name, result["text"])
            if not column.answer and result["text"]:
                column.append(result["text"])
            stats = speed_line(result["started"], self.first_token.get(column_name), time.perf_counter(),
                               result["completion_tokens"])
            note = {"cancelled": "stopped", "length": "cut at max tokens"}.get(result["finish_reason"], "")
            column.finish(stats, note)
        else:
            column.finish("failed", "no answer")
            self.app.show_error(message.error, f"The {ROLE_TITLES[column_name]} could not answer")
        self.streaming.discard(column_name)
        if not self.streaming:
            self.sent_at = None
            if self.app.screen is not self:
                job_done(self, "Both models have answered.", title="Chat")
        self.tick()

    def tick(self) -> None:
        state = ""
        if self.streaming and self.sent_at is not None:
            state = f"answering… {fmt_seconds(time.monotonic() - self.sent_at)}"
        elif self.conversation is not None and len(self.conversation):
            state = f"{len(self.conversation)} exchange{'s' if len(self.conversation) != 1 else ''}"
        self.query_one("#chat-state", Static).update(Text(state))

    # ------------------------------------------------------------------ actions
    def stop_answers(self) -> None:
        self.stopped.set()
        with self.jobs_lock:
            running = list(self.chat_jobs.values())
        for job in running:
            job.stop()

    def action_stop(self) -> None:
        if self.streaming:
            self.stop_answers()
        else:
            self.query_one("#chat-cols").focus() if self.query_one("#chat-cols").can_focus else self.set_focus(None)

    def action_new(self) -> None:
        if self.streaming:
            self.stop_answers()
            self.notify("Stopped the answers; press ctrl+n again for a new conversation.")
            return
        self.new_conversation()
        self.tick()
        self.query_one("#prompt", Input).focus()

    def action_toggle_base(self) -> None:
        if self.run_id is None:
            self.notify("Without a trained run the student column already is the base student.")
            return
        if self.streaming:
            self.notify("Wait for the answers before changing columns.", severity="warning")
            return
        self.toggle_class("with-base")
        base = self.query_one("#col-base", ChatColumn)
        if self.has_class("with-base"):
            base.clear()
            base.note("The base student answers from the next message on.")

    def action_settings(self) -> None:
        self.query_one("#chat-temperature", Input).focus()

    def action_pick_run(self) -> None:
        self.query_one("#chat-run", Select).focus()

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt", Input).focus()

    def unsaved_problem(self) -> str | None:
        return None

    def flush(self) -> None:
        self.stopped.set()
        self.close_jobs()

    def on_unmount(self) -> None:
        self.stopped.set()
        self.close_jobs()
