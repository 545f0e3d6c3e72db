"""Edit one example: system, user and assistant text, validated as you type."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static, TextArea

from stillroom.core import records
from stillroom.core.config import TaskConfig
from stillroom.core.tasks import task_kind

from .confirm import ConfirmDialog


def problem_with(task: TaskConfig, user: str, answer: str) -> str | None:
    """Why this example would be wrong for the task, or None."""
    if not user.strip():
        return "The user text is empty."
    if not answer.strip():
        return "The answer is empty."
    return task_kind(task).answer_problem(answer)


class RowFormDialog(ModalScreen["list | None"]):
    """Returns the new messages list, or None when cancelled."""

    DEFAULT_CSS = """
    RowFormDialog { align: center middle; }
    RowFormDialog > Vertical {
        width: 100; max-width: 98%; height: 30; max-height: 92%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    RowFormDialog .title { text-style: bold; margin-bottom: 1; }
    RowFormDialog Label { color: $text-muted; }
    RowFormDialog TextArea { background: $panel; margin-bottom: 1; }
    RowFormDialog TextArea:focus { background: $panel-lighten-1; }
    RowFormDialog #system { height: 3; }
    RowFormDialog #user { height: 1fr; min-height: 4; }
    RowFormDialog #assistant { height: 4; }
    RowFormDialog #problem { height: 1; margin-top: 1; }
    RowFormDialog #problem.bad { color: $error; }
    RowFormDialog #problem.ok { color: $success; }
    RowFormDialog Horizontal { height: auto; align-horizontal: right; }
    RowFormDialog Button { margin-left: 2; }
    """
    BINDINGS = [Binding("ctrl+s", "save", "Save", priority=True),
                Binding("escape", "cancel", "Cancel")]

    def __init__(self, task: TaskConfig, row: dict | None = None, title: str = "Edit example") -> None:
        super().__init__()
        self.task_config = task
        self.row = row
        self.title_text = title
        self._initial = self._values_of(row)

    def _values_of(self, row):
        if row is None:
            return (self.task_config.system_prompt, "", "")
        answer = records.answer_text(row) if row["messages"][-1]["role"] == "assistant" else ""
        return (records.system_text(row), records.user_text(row), answer)

    def compose(self) -> ComposeResult:
        system, user, answer = self._initial
        task = self.task_config
        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            yield Label("System")
            yield TextArea(system, id="system", soft_wrap=True, tab_behavior="focus", compact=True)
            yield Label(f"User ({task.input_name})")
            yield TextArea(user, id="user", soft_wrap=True, tab_behavior="focus", compact=True)
            labels = task_kind(task).label_set
            hint = f" — one of: {', '.join(labels)}" if labels else ""
            yield Label(f"Assistant ({task.output_name}){hint}")
            yield TextArea(answer, id="assistant", soft_wrap=True, tab_behavior="focus", compact=True)
            yield Static("", id="problem")
            with Horizontal():
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Save (ctrl+s)", variant="primary", id="save")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#user", TextArea).focus()
        self.validate()

    def values(self) -> tuple[str, str, str]:
        return tuple(self.query_one(f"#{name}", TextArea).text for name in ("system", "user", "assistant"))

    def validate(self) -> str | None:
        system, user, answer = self.values()
        problem = problem_with(self.task_config, user, answer)
        widget = self.query_one("#problem", Static)
        widget.update(Text(problem or "✓ valid"))
        widget.set_class(bool(problem), "bad")
        widget.set_class(not problem, "ok")
        return problem

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.validate()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        if self.validate():
            self.app.bell()
            return
        system, user, answer = self.values()
        messages = ([{"role": "system", "content": system.strip()}] if system.strip() else []) + [
            {"role": "user", "content": user.strip()}, {"role": "assistant", "content": answer.strip()}]
        self.dismiss(messages)

    @property
    def dirty(self) -> bool:
        return self.values() != self._initial

    def action_cancel(self) -> None:
        if not self.dirty:
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.dismiss(None)
        self.app.push_screen(ConfirmDialog("Discard the changes to this example?", yes="Discard",
                                           no="Keep editing"), answered)
