"""What every workbench screen shares: the header on top, the footer with its keys at the bottom, the
session's state (`workbench`), and the hooks the app calls on every screen it has built."""
from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from stillroom.tui.bridge import JobEnded, JobEvent, deliver
from stillroom.tui.widgets.header import WorkbenchHeader

if TYPE_CHECKING:
    from stillroom.core.project import Project
    from stillroom.tui.workbench import Workbench


class WorkbenchScreen(Screen):
    """Subclasses set MODE and LABEL and write `compose_body`; `flush` saves anything pending."""

    MODE = ""
    LABEL = ""

    @property
    def workbench(self) -> "Workbench":
        return self.app.workbench

    @property
    def project(self) -> "Project":
        """The open project (every screen but Projects is built only while one is open)."""
        return self.app.workbench.project

    def compose(self) -> ComposeResult:
        yield self.app.make_header(self.MODE)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.watch(self.app, "theme", lambda _theme: self.refresh_colours(), init=False)

    def refresh_colours(self) -> None:
        """Redraw the text drawn from Python in theme colours (stillroom.themes.color): the theme changed."""

    @property
    def header(self) -> WorkbenchHeader:
        return self.query_one(WorkbenchHeader)

    def unsaved_problem(self) -> str | None:
        """A sentence when an edit cannot be saved as it stands (quitting would lose it)."""
        return None

    def flush(self) -> None:
        """Save every pending edit now (called before quitting or closing the project)."""

    def on_project_changed(self, what: str) -> None:
        """Another screen changed seeds, tests or settings."""

    def on_generation_event(self, event) -> None:
        """An engine event from the teacher's generation job (core.events)."""

    def generation_ended(self, error: BaseException | None) -> None:
        """Generation finished, paused, stopped or failed (`error`: why it failed, else None)."""

    def on_run_selected(self, run_id: str | None) -> None:
        """The user picked `run_id` as the run Compare, Chat and Export show."""

    def on_job_event(self, message: JobEvent) -> None:
        deliver(message)          # to the handler the screen named when it ran the job (tui.bridge.run_job)

    def on_job_ended(self, message: JobEnded) -> None:
        deliver(message)


class PlaceholderScreen(WorkbenchScreen):
    """Stands in for a screen of the registry that this version does not have yet."""

    DEFAULT_CSS = """
    PlaceholderScreen #placeholder { width: 1fr; height: 1fr; content-align: center middle; color: $text-muted; }
    """

    def __init__(self, mode: str, label: str, hint: str = "") -> None:
        super().__init__()
        self.MODE, self.LABEL, self.hint = mode, label, hint

    def compose_body(self) -> ComposeResult:
        from textual.widgets import Static
        message = (self.hint if self.hint.startswith("It failed") else
                   f"The {self.LABEL} screen is not part of this version yet.\n{self.hint}")
        yield Static(message, id="placeholder", markup=False)
