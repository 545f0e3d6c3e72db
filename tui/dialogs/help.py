"""Every key of every screen, in one place (`?`)."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def _key_name(key: str) -> str:
    names = {"question_mark": "?", "escape": "esc", "space": "space", "enter": "enter",
             "ctrl+p": "ctrl+p", "ctrl+q": "ctrl+q", "delete": "del"}
    return " ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


def bindings_table(title: str, bindings) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(width=16, style="bold")
    table.add_column()
    table.title = title
    table.title_justify = "left"
    table.title_style = "bold underline"
    for binding in bindings:
        if isinstance(binding, tuple):
            binding = Binding(*binding)
        if not binding.description:
            continue
        table.add_row(Text(_key_name(binding.key_display or binding.key)), Text(binding.description))
    return table


class HelpDialog(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpDialog { align: center middle; }
    HelpDialog > Vertical {
        width: 90; max-width: 98%; height: 90%; border: thick $primary; background: $surface; padding: 0 1;
    }
    HelpDialog VerticalScroll { height: 1fr; }
    HelpDialog Static.section { margin-bottom: 1; }
    HelpDialog .hint { color: $text-muted; dock: bottom; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, sections: list[tuple[str, list]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll():
                for title, bindings in self.sections:
                    yield Static(bindings_table(title, bindings), classes="section")
            yield Static("esc closes · ctrl+p opens the command palette", classes="hint")

    def action_dismiss(self) -> None:
        self.dismiss()
