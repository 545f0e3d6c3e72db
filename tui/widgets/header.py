"""The workbench header: project and models on the first line, the screen tabs and job state below."""
from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class WorkbenchHeader(Widget):
    DEFAULT_CSS = """
    WorkbenchHeader {
        dock: top;
        height: 2;
        background: $panel;
        color: $foreground;
    }
    """

    project_name: reactive[str] = reactive("")
    models: reactive[str] = reactive("")
    active: reactive[str] = reactive("")
    job: reactive[str] = reactive("")

    def __init__(self, tabs: list[tuple[str, str, str]], **kwargs) -> None:
        """tabs: (key, mode name, title)"""
        super().__init__(**kwargs)
        self.tabs = tabs

    def render(self) -> Text:
        width = self.size.width
        top = Text(no_wrap=True, overflow="ellipsis")
        top.append(" Stillroom", style=f"bold {self.app.current_theme.accent}")
        if self.project_name:
            top.append("  ─  ", style="dim")
            top.append(self.project_name, style="bold")
        if self.models:
            top.append("  ─  ", style="dim")
            top.append(self.models, style="dim")
        top.truncate(width, overflow="ellipsis")
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" ")
        for key, mode, title in self.tabs:
            if mode == self.active:
                line.append(f" {key} {title} ", style="reverse bold")
            else:
                line.append(f" {key} ", style="bold")
                line.append(f"{title} ", style="dim" if not self.project_name and key != "0" else "")
            line.append(" ")
        if self.job:
            job = Text(f"● {self.job} ", style="bold")
            pad = width - line.cell_len - job.cell_len
            if pad > 0:
                line.append(" " * pad)
                line.append_text(job)
        line.truncate(width, overflow="ellipsis")
        return Text("\n").join([top, line])
