"""The one dialog every error arrives in: one sentence of cause, one of remedy."""
from __future__ import annotations

import traceback

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from stillroom.core.errors import StillroomError


def describe(error: BaseException) -> tuple[str, str]:
    """(cause, remedy) for any exception."""
    if isinstance(error, StillroomError):
        return str(error), error.remedy or "Fix the problem above and try again."
    if isinstance(error, MemoryError):
        return "The machine ran out of memory.", "Close other programs or use a smaller model."
    if isinstance(error, OSError):
        return f"{error.filename or 'A file'}: {error.strerror or error}", \
            "Check that the path exists and that you may write to it."
    return (f"Unexpected {type(error).__name__}: {error}",
            "This is a bug in Stillroom; the details are saved in last-error.txt in the settings folder.")


def save_traceback(error: BaseException) -> None:
    if isinstance(error, StillroomError):
        return
    try:
        from stillroom.core import locations
        from stillroom.core.fsio import atomic_write_text
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        atomic_write_text(locations.config_dir() / "last-error.txt", text)
    except Exception:
        pass


class ErrorDialog(ModalScreen[None]):
    DEFAULT_CSS = """
    ErrorDialog { align: center middle; }
    ErrorDialog > Vertical {
        width: 76; max-width: 95%; height: auto; max-height: 80%;
        border: thick $error; background: $surface; padding: 1 2;
    }
    ErrorDialog .title { text-style: bold; color: $error; margin-bottom: 1; }
    ErrorDialog .remedy { color: $text-muted; margin-top: 1; }
    ErrorDialog Button { margin-top: 1; }
    """
    BINDINGS = [Binding("escape,enter", "dismiss", "Close")]

    def __init__(self, error: BaseException, title: str = "") -> None:
        super().__init__()
        self.error = error
        self.title_text = title or "That did not work"
        save_traceback(error)

    def compose(self) -> ComposeResult:
        cause, remedy = describe(self.error)
        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            yield Static(Text(cause), id="cause")
            yield Static(Text(remedy), classes="remedy", id="remedy")
            yield Button("Close", variant="error", id="close")

    def on_button_pressed(self) -> None:
        self.dismiss()

    def action_dismiss(self) -> None:
        self.dismiss()
