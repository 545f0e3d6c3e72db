"""Projects: recent projects, open a folder, create a new project or the demo."""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from stillroom.core import locations
from stillroom.core.config import TASK_TYPES
from stillroom.core.project import CONFIG_NAME
from stillroom.tui import settings
from stillroom.tui.screens.base import WorkbenchScreen


def _ago(stamp: float) -> str:
    seconds = max(0, time.time() - stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


class ProjectsScreen(WorkbenchScreen):
    MODE = "projects"
    LABEL = "Projects"
    AUTO_FOCUS = "#recent"
    BINDINGS = [
        Binding("enter", "open_selected", "Open", show=True),
        Binding("o", "open_folder", "Open folder"),
        Binding("n", "new_project", "New project"),
        Binding("d", "demo_project", "Demo project"),
        Binding("delete,backspace", "forget", "Forget from list"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="projects-body"):
            with Vertical(id="recent-pane"):
                yield Static("Recent projects", classes="pane-title")
                yield DataTable(id="recent", cursor_type="row", zebra_stripes=False)
                yield Static("No projects yet. Press d for the demo project or n for a new one.",
                             id="no-recent")
            with Vertical(id="actions-pane"):
                yield Static("Start", classes="pane-title")
                yield Static(self._actions_text(), id="actions")

    def _actions_text(self) -> Text:
        text = Text()
        for key, label, detail in (
                ("enter", "open the selected project", ""),
                ("o", "open a project folder", ""),
                ("n", "create a new project", "classification · extraction · qa · generation"),
                ("d", "create the demo project", "ticket routing: 24 seeds, 64 test rows")):
            text.append(f" {key:>5}  ", style="bold")
            text.append(label + "\n")
            if detail:
                text.append(f"        {detail}\n", style="dim")
        text.append("\n")
        text.append(" New projects go to\n", style="dim")
        text.append(f" {locations.data_dir()}", style="dim")
        return text

    def on_mount(self) -> None:
        table = self.query_one("#recent", DataTable)
        table.add_columns("name", "path", "seeds", "rows", "opened")
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def reload(self) -> None:
        table = self.query_one("#recent", DataTable)
        table.clear()
        for item in settings.recent_projects():
            path = Path(item["path"])
            exists = (path / CONFIG_NAME).exists()
            style = "" if exists else "dim strike"
            seeds = _count_lines(path / "seeds.jsonl") if exists else 0
            rows = _count_lines(path / "data" / "synthetic.jsonl") if exists else 0
            table.add_row(Text(item.get("name") or path.name, style=style),
                          Text(str(path) + ("" if exists else "  (missing)"), style=style),
                          Text(str(seeds), justify="right"), Text(str(rows), justify="right"),
                          Text(_ago(item.get("opened", 0)), style="dim"), key=str(path))
        self.query_one("#no-recent").display = not table.row_count
        table.display = bool(table.row_count)
        if table.row_count:
            table.focus()

    def _selected_path(self) -> Path | None:
        table = self.query_one("#recent", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return Path(key.value)

    async def action_open_selected(self) -> None:
        path = self._selected_path()
        if path is not None:
            await self.app.open_project(path)

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        await self.app.open_project(Path(event.row_key.value))

    def action_forget(self) -> None:
        path = self._selected_path()
        if path is not None:
            settings.forget_project(str(path))
            self.reload()

    def action_open_folder(self) -> None:
        from stillroom.tui.dialogs.path_prompt import PathPrompt

        def chosen(result) -> None:
            if result:
                self.app.call_next(self.app.open_project, result[0])
        self.app.push_screen(PathPrompt("Open a project folder", str(Path.cwd()), label="Folder",
                                        must_exist=True, ok="Open"), chosen)

    def action_new_project(self) -> None:
        from stillroom.tui.dialogs.path_prompt import PathPrompt

        def chosen(result) -> None:
            if result:
                path, task_type = result
                self.app.call_next(partial_open(self.app, path, task_type))
        self.app.push_screen(PathPrompt(
            "Create a new project", str(locations.default_project_dir("my-task")), label="New folder",
            choice_label="Task type", choices=[(t, t) for t in TASK_TYPES], choice="classification",
            ok="Create"), chosen)

    def action_demo_project(self) -> None:
        from stillroom.tui.dialogs.path_prompt import PathPrompt

        def chosen(result) -> None:
            if result:
                path = result[0]
                if (path / CONFIG_NAME).exists():
                    self.app.call_next(self.app.open_project, path)
                else:
                    self.app.call_next(partial_open(self.app, path, None, demo=True))
        self.app.push_screen(PathPrompt("Create the demo project",
                                        str(locations.default_project_dir("support-routing")),
                                        label="Folder", ok="Create"), chosen)


def partial_open(app, path, task_type, demo=False):
    async def run() -> None:
        await app.open_project(path, create=task_type, demo=demo)
    return run
