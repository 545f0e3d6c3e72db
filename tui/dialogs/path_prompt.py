"""Ask for a path (and optionally one choice, e.g. a task type or where imported rows go)."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static


class PathPrompt(ModalScreen["tuple[Path, str | None] | None"]):
    DEFAULT_CSS = """
    PathPrompt { align: center middle; }
    PathPrompt > Vertical {
        width: 84; max-width: 98%; height: auto; border: thick $primary; background: $surface; padding: 1 2;
    }
    PathPrompt .title { text-style: bold; margin-bottom: 1; }
    PathPrompt Label { color: $text-muted; margin-top: 1; }
    PathPrompt #problem { color: $error; height: auto; }
    PathPrompt Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    PathPrompt Button { margin-left: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", *, label: str = "Path",
                 choice_label: str = "", choices: list[tuple[str, str]] | None = None,
                 choice: str | None = None, must_exist: bool = False, ok: str = "OK",
                 note: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.label_text = title, value, label
        self.choice_label, self.choices, self.choice = choice_label, choices or [], choice
        self.must_exist, self.ok, self.note = must_exist, ok, note

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            if self.note:
                yield Static(Text(self.note, style="dim"))
            yield Label(self.label_text)
            yield Input(self.value, id="path")
            if self.choices:
                yield Label(self.choice_label)
                yield Select(self.choices, value=self.choice or self.choices[0][1], allow_blank=False,
                             id="choice")
            yield Static("", id="problem")
            with Horizontal():
                yield Button("Cancel (esc)", id="cancel")
                yield Button(f"{self.ok} (enter)", variant="primary", id="ok")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        raw = self.query_one("#path", Input).value.strip()
        problem = self.query_one("#problem", Static)
        if not raw:
            problem.update("Enter a path.")
            return
        path = Path(raw).expanduser()
        if self.must_exist and not path.exists():
            problem.update(Text(f"{path}: no such file or folder"))
            return
        choice = self.query_one("#choice", Select).value if self.choices else None
        self.dismiss((path, choice))

    def action_cancel(self) -> None:
        self.dismiss(None)
