"""Chat: one prompt box; the teacher and the tuned student (and, on ctrl+b, the base student) answer side
by side as they stream, each with its time to first token and tokens per second underneath.

Each column answers in its own thread worker, so the interface never waits on a model. The models load
on the first message and stay loaded while the project is open.
"""
from __future__ import annotations

import random
import threading
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label, Select, Static
from textual.worker import WorkerState

from stillroom.core import chat as chat_core
from stillroom.core.backends.base import SamplingParams
from stillroom.core.errors import StillroomError
from stillroom.tui import jobs
from stillroom.tui.screens.base import WorkbenchScreen
from stillroom.tui.widgets.chat_column import ChatColumn

NO_RUN = "__base__"


class ChatChunk(Message):
    def __init__(self, column: str, text: str) -> None:
        super().__init__()
        self.column = column
        self.text = text


class ChatNote(Message):
    def __init__(self, column: str, text: str, model: str = "") -> None:
        super().__init__()
        self.column = column
        self.text = text
        self.model = model


class ChatDone(Message):
    def __init__(self, column: str, stats: str, note: str = "", error: BaseException | None = None) -> None:
        super().__init__()
        self.column = column
        self.stats = stats
        self.note = note
        self.error = error


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
        self.students: tuple | None = None          # (base, tuned) for self.students_run
        self.students_run: str | None = None
        self.models_lock = threading.Lock()
        self.cancel = threading.Event()
        self.streaming: set[str] = set()
        self.sent_at: float | None = None

    @property
    def project(self):
        return self.app.project

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
            yield ChatColumn("teacher", "teacher", id="col-teacher")
            yield ChatColumn("tuned", "tuned student", id="col-tuned")
            yield ChatColumn("base", "base student", id="col-base")
        yield Input("", id="prompt", placeholder="Ask the teacher and the student…  (enter sends, esc stops)")

    def on_mount(self) -> None:
        self.load_runs(jobs.selected_run(self.app))
        self.set_interval(0.5, self.tick)
        self.query_one("#prompt", Input).focus()

    # ------------------------------------------------------------------ runs
    def load_runs(self, prefer: str | None = None) -> None:
        from stillroom.core.runs import list_runs
        try:
            runs = [r.run_id for r in list_runs(self.project) if r.output_dir is not None]
        except Exception:  # noqa: BLE001
            runs = []
        options = [(r, r) for r in reversed(runs)] + [("no run: the untrained student", NO_RUN)]
        select = self.query_one("#chat-run", Select)
        choice = prefer if prefer in runs else (self.run_id if self.run_id in runs else
                                                (runs[-1] if runs else NO_RUN))
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = choice
        self.use_run(choice)

    def use_run(self, run_id: str) -> None:
        run_id = None if run_id == NO_RUN else run_id
        changed = run_id != self.run_id or self.conversation is None
        self.run_id = run_id
        tuned = self.query_one("#col-tuned", ChatColumn)
        tuned.set_title("tuned student" if run_id else "student (untrained)", run_id or "")
        if run_id is None and self.has_class("with-base"):
            self.remove_class("with-base")
        if changed:
            self.new_conversation()

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
        if getattr(self.app, "generating", False):
            self.notify("The teacher is busy generating; its answer starts when a candidate finishes.")
        box.value = ""
        self.conversation.ask(text)
        self.cancel = threading.Event()
        self.sent_at = time.monotonic()
        for column in self.columns():
            self.query_one(f"#col-{column}", ChatColumn).begin(text)
            self.streaming.add(column)
            self.run_worker(lambda c=column: self._answer(c, params, self.cancel), thread=True,
                            group=f"chat-{column}", name=f"chat-{column}", exit_on_error=False)
        self.tick()

    def _model(self, column: str):
        """The column's model, loaded on first use (runs in a worker thread)."""
        if column == "teacher":
            if getattr(self.app, "_teacher", None) is None:
                self.post_message(ChatNote(column, f"loading teacher {self.project.config.teacher.model}…"))
            return jobs.shared_teacher(self.app)
        with self.models_lock:
            if self.students is None or self.students_run != self.run_id:
                self.post_message(ChatNote(column, "loading the student…"))
                self._close_students()
                self.students = self._load_students(self.run_id)
                self.students_run = self.run_id
            base, tuned = self.students
        return tuned if column == "tuned" else base

    def _load_students(self, run_id: str | None) -> tuple:
        from stillroom.core.evaluate import load_students, run_weights
        if run_id is None:
            from stillroom.core.backends.hf import HFModel
            ref = self.project.config.student.model
            model = HFModel.load(ref, project_dir=self.project.root,
                                 device=self.project.config.evaluation.device,
                                 name=ref.split(":", 1)[-1])
            return model, model
        return load_students(self.project, run_weights(self.project, run_id))

    def _close_students(self) -> None:
        students, self.students = self.students, None
        if students is not None:
            for model in {id(m): m for m in students}.values():
                try:
                    model.close()
                except Exception:  # noqa: BLE001
                    pass

    def _answer(self, column: str, params: SamplingParams, cancel: threading.Event) -> None:
        try:
            model = self._model(column)
            slot = chat_core.slot_for(column, model, self.project.config.teacher.mode)
            self.post_message(ChatNote(column, "", model=getattr(model, "name", "")))
            batcher = jobs.TokenBatcher(lambda text: self.post_message(ChatChunk(column, text)))
            started = time.perf_counter()
            completion = chat_core.respond(model, self.conversation, slot, params, on_token=batcher,
                                           cancel=cancel)
            batcher.flush()
            ended = time.perf_counter()
            if not batcher.pieces and completion.text:
                self.post_message(ChatChunk(column, completion.text))
            note = {"cancelled": "stopped", "length": "cut at max tokens"}.get(completion.finish_reason, "")
            self.post_message(ChatDone(column, speed_line(started, batcher.first, ended,
                                                          completion.completion_tokens), note))
        except BaseException as error:  # noqa: BLE001 - shown in the column and as a dialog
            self.post_message(ChatDone(column, "failed", "no answer", error=error))

    # ------------------------------------------------------------------ messages
    def on_chat_chunk(self, message: ChatChunk) -> None:
        column = self.query_one(f"#col-{message.column}", ChatColumn)
        column.note("")
        column.append(message.text)

    def on_chat_note(self, message: ChatNote) -> None:
        column = self.query_one(f"#col-{message.column}", ChatColumn)
        column.note(message.text)
        if message.model:
            title = {"teacher": "teacher", "tuned": "tuned student" if self.run_id else "student (untrained)",
                     "base": "base student"}[message.column]
            column.set_title(title, message.model)

    def on_chat_done(self, message: ChatDone) -> None:
        column = self.query_one(f"#col-{message.column}", ChatColumn)
        column.note("")
        column.finish(message.stats, message.note)
        self.streaming.discard(message.column)
        if message.error is not None:
            self.app.show_error(message.error, f"The {chat_core.TITLES[message.column]} could not answer")
        if not self.streaming:
            self.sent_at = None
            if self.app.screen is not self:
                jobs.job_done(self.app, self, "Both models have answered.", title="Chat")
        self.tick()

    def tick(self) -> None:
        state = ""
        if self.streaming and self.sent_at is not None:
            state = f"answering… {jobs.fmt_seconds(time.monotonic() - self.sent_at)}"
        elif self.conversation is not None and len(self.conversation):
            state = f"{len(self.conversation)} exchange{'s' if len(self.conversation) != 1 else ''}"
        self.query_one("#chat-state", Static).update(Text(state))

    # ------------------------------------------------------------------ actions
    def action_stop(self) -> None:
        if self.streaming:
            self.cancel.set()
        else:
            self.query_one("#chat-cols").focus() if self.query_one("#chat-cols").can_focus else self.set_focus(None)

    def action_new(self) -> None:
        if self.streaming:
            self.cancel.set()
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
        self.cancel.set()
        self._close_students()

    def on_unmount(self) -> None:
        self.cancel.set()
        if not any(w.state == WorkerState.RUNNING for w in self.workers):
            self._close_students()
