"""Task and seeds: the task description and settings at left; seed and test examples at right."""
from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Input, Label, Select, Static, TabbedContent, TabPane, TextArea

from stillroom.core import records
from stillroom.core.config import TASK_TYPES, parse_config, render_toml
from stillroom.core.errors import StillroomError
from stillroom.core.project import text_id
from stillroom.core.tasks import kind_named, task_kind
from stillroom import themes
from stillroom.tui.format import messages_text
from stillroom.tui.screens.base import WorkbenchScreen


def row_detail(row: dict | None, where: str = "") -> Text:
    if row is None:
        return Text("No example selected.", style="dim")
    out = Text()
    if where:
        out.append(where + "\n", style="dim")
    out.append(messages_text(row["messages"]))
    out.append("\n")
    return out


class TaskScreen(WorkbenchScreen):
    MODE = "task"
    LABEL = "Task"
    AUTO_FOCUS = "#seeds"
    BINDINGS = [
        Binding("a", "add", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("c", "duplicate", "Duplicate", show=False),
        Binding("d", "delete", "Delete"),
        Binding("u", "undo", "Undo"),
        Binding("m", "move", "Move to seeds/test"),
        Binding("t", "switch_tab", "Seeds/Test", show=False),
        Binding("i", "import_file", "Import"),
        Binding("E", "export_file", "Export", show=False),
        Binding("f", "focus_form", "Task form", show=False),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.seeds: list[dict] = []
        self.tests: list[dict] = []
        self.has_test_file = False
        self.held: set[str] = set()
        self.undo_stack: list[tuple[str, list, list | None]] = []
        self._save_timer: Timer | None = None
        self._config_problem: str | None = None

    # ------------------------------------------------------------------ layout
    def compose_body(self) -> ComposeResult:
        task = self.project.config.task
        with Horizontal(id="task-body"):
            with Vertical(id="task-form"):
                yield Label("Name")
                yield Input(task.name, id="name", compact=True)
                yield Label("Task type")
                yield Select([(t, t) for t in TASK_TYPES], value=task.type, allow_blank=False, id="type",
                             compact=True)
                yield Label("Labels (comma-separated)", id="labels-label")
                yield Input(", ".join(task.labels), id="labels", compact=True)
                yield Static("", id="chips")
                yield Label("JSON schema", id="schema-label")
                yield TextArea(task.json_schema, id="schema", soft_wrap=True, tab_behavior="focus",
                               compact=True)
                yield Label("Description (the teacher reads this)")
                yield TextArea(task.description, id="description", soft_wrap=True, tab_behavior="focus",
                               compact=True)
                yield Label("System prompt")
                yield TextArea(task.system_prompt, id="system", soft_wrap=True, tab_behavior="focus",
                               compact=True)
                yield Static("", id="config-problem")
            with Vertical(id="task-rows"):
                with TabbedContent(id="tabs"):
                    with TabPane("Seeds", id="seeds-tab"):
                        yield DataTable(id="seeds", cursor_type="row")
                    with TabPane("Test", id="tests-tab"):
                        yield DataTable(id="tests", cursor_type="row")
                yield Static("", id="detail")

    def on_mount(self) -> None:
        self._text_width = 0
        self._show_type_fields()
        self.load_rows()
        self.query_one("#seeds", DataTable).focus()
        self.call_after_refresh(self._fit_columns)

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_columns)

    def refresh_colours(self) -> None:
        self.refresh_tables()

    def _fit_columns(self) -> None:
        width = max(20, (self.query_one("#task-rows").size.width or 80) - 4 - 14 - 9)
        if width != self._text_width:
            self.refresh_tables()

    # ------------------------------------------------------------------ rows
    def load_rows(self) -> None:
        project = self.project
        try:
            self.seeds = project.all_seeds()
            self.has_test_file = project.test_path.exists()
            self.tests = project.tests()
        except StillroomError as error:
            self.app.show_error(error, "Could not read the examples")
            return
        self.held = set() if self.has_test_file else {text_id(records.user_text(r)) for r in self.tests}
        self.refresh_tables()

    def refresh_tables(self, keep: tuple[str, int] | None = None) -> None:
        self._text_width = max(20, (self.query_one("#task-rows").size.width or 80) - 4 - 14 - 9)
        error = themes.color(self.app, "error")
        for name, rows in (("seeds", self.seeds), ("tests", self.tests)):
            table = self.query_one(f"#{name}", DataTable)
            old = table.cursor_row
            table.clear(columns=True)
            table.add_column("#", width=4, key="n")
            table.add_column("answer", width=14, key="answer")
            table.add_column("text", width=self._text_width, key="text")
            for n, row in enumerate(rows):
                held = name == "seeds" and text_id(records.user_text(row)) in self.held
                answer = records.answer_text(row)
                bad = (task_kind(self.project.config.task).uses_labels
                       and answer not in self.project.config.task.labels)
                table.add_row(Text(str(n + 1) + ("ʰ" if held else ""), style="dim" if held else ""),
                              Text(records.one_line(answer, 14), style=error if bad else ""),
                              Text(records.one_line(records.user_text(row), self._text_width)))
            if keep and keep[0] == name:
                target = keep[1]
            else:
                target = old
            if rows:
                table.move_cursor(row=max(0, min(target, len(rows) - 1)))
        tabs = self.query_one("#tabs", TabbedContent)
        tabs.get_tab("seeds-tab").label = f"Seeds ({len(self.seeds)})"
        suffix = "" if self.has_test_file else ", held out from seeds"
        tabs.get_tab("tests-tab").label = f"Test ({len(self.tests)}{suffix})"
        self.refresh_chips()
        self.refresh_detail()

    def refresh_chips(self) -> None:
        task = self.project.config.task
        chips = self.query_one("#chips", Static)
        if not task_kind(task).uses_labels:
            chips.update("")
            return
        counts = Counter(records.answer_text(r) for r in self.seeds)
        text = Text()
        error = themes.color(self.app, "error")
        for label in task.labels:
            text.append(f" {label} ", style="reverse")
            text.append(f" {counts.get(label, 0)}  ")
        unknown = sorted(set(counts) - set(task.labels))
        for label in unknown:
            text.append(f" {label} ", style=f"reverse {error}")
            text.append(f" {counts[label]} not a label  ", style=error)
        chips.update(text)

    def current(self) -> str:
        return "tests" if self.query_one("#tabs", TabbedContent).active == "tests-tab" else "seeds"

    def table(self) -> DataTable:
        return self.query_one(f"#{self.current()}", DataTable)

    def rows_of(self, name: str) -> list[dict]:
        return self.seeds if name == "seeds" else self.tests

    def selected(self) -> tuple[str, int | None]:
        name = self.current()
        rows = self.rows_of(name)
        table = self.query_one(f"#{name}", DataTable)
        if not rows:
            return name, None
        return name, max(0, min(table.cursor_row, len(rows) - 1))

    def refresh_detail(self) -> None:
        name, index = self.selected()
        row = None if index is None else self.rows_of(name)[index]
        where = ""
        if row is not None:
            where = f"{'seed' if name == 'seeds' else 'test example'} {index + 1} of {len(self.rows_of(name))}"
            if name == "seeds" and text_id(records.user_text(row)) in self.held:
                where += " · held out for testing (no test.jsonl)"
        self.query_one("#detail", Static).update(row_detail(row, where))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.refresh_detail()

    def on_tabbed_content_tab_activated(self, event) -> None:
        self.refresh_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_edit()

    # ------------------------------------------------------------------ saving rows
    def _writable(self, name: str) -> bool:
        if name == "tests" and not self.has_test_file:
            self.notify("These test rows are held out from the seeds automatically. Edit them in Seeds, or "
                        "move seeds here with m to start a test.jsonl.", severity="warning", timeout=6)
            return False
        return True

    def _remember(self, description: str) -> None:
        self.undo_stack.append((description, copy.deepcopy(self.seeds),
                                copy.deepcopy(self.tests) if self.has_test_file else None))
        del self.undo_stack[:-100]

    def _save(self, *, tests: bool = False) -> None:
        try:
            self.project.save_seeds(self.seeds)
            if tests:
                self.project.save_tests(self.tests)
        except StillroomError as error:
            self.app.show_error(error, "Could not save the examples")
        self.app.notify_project_changed("seeds", self)

    def _after_change(self, keep: tuple[str, int] | None = None) -> None:
        if not self.has_test_file:
            self.tests = self.project.tests()
            self.held = {text_id(records.user_text(r)) for r in self.tests}
        self.refresh_tables(keep)

    def action_add(self) -> None:
        name = self.current()
        if not self._writable(name):
            return
        from stillroom.tui.dialogs.row_form import RowFormDialog

        def done(messages) -> None:
            if messages:
                self._remember("add")
                rows = self.rows_of(name)
                rows.append({"messages": messages})
                self._save(tests=name == "tests")
                self._after_change((name, len(rows) - 1))
        self.app.push_screen(RowFormDialog(self.project.config.task, None,
                                           f"New {'seed' if name == 'seeds' else 'test'} example"), done)

    def action_edit(self) -> None:
        name, index = self.selected()
        if index is None or not self._writable(name):
            return
        from stillroom.tui.dialogs.row_form import RowFormDialog
        row = self.rows_of(name)[index]

        def done(messages) -> None:
            if messages and messages != row["messages"]:
                self._remember("edit")
                self.rows_of(name)[index] = {"messages": messages}
                self._save(tests=name == "tests")
                self._after_change((name, index))
        self.app.push_screen(RowFormDialog(self.project.config.task, row,
                                           f"Edit {'seed' if name == 'seeds' else 'test'} example "
                                           f"{index + 1}"), done)

    def action_duplicate(self) -> None:
        name, index = self.selected()
        if index is None or not self._writable(name):
            return
        self._remember("duplicate")
        rows = self.rows_of(name)
        rows.insert(index + 1, copy.deepcopy(rows[index]))
        self._save(tests=name == "tests")
        self._after_change((name, index + 1))
        self.notify("Duplicated; press e to change the copy.")

    def action_delete(self) -> None:
        name, index = self.selected()
        if index is None or not self._writable(name):
            return
        self._remember("delete")
        del self.rows_of(name)[index]
        self._save(tests=name == "tests")
        self._after_change((name, index))
        self.notify("Deleted. u undoes.")

    def action_undo(self) -> None:
        if not self.undo_stack:
            self.notify("Nothing to undo.")
            return
        description, seeds, tests = self.undo_stack.pop()
        self.seeds = seeds
        try:
            self.project.save_seeds(seeds)
            if tests is not None:
                self.tests = tests
                self.has_test_file = True
                self.project.save_tests(tests)
        except StillroomError as error:
            self.app.show_error(error, "Could not save the examples")
        self.app.notify_project_changed("seeds", self)
        self._after_change()
        self.notify(f"Undid {description}.")

    def action_move(self) -> None:
        name, index = self.selected()
        if index is None:
            return
        if name == "tests" and not self.has_test_file:
            self._writable(name)
            return
        self._remember("move")
        row = self.rows_of(name).pop(index)
        if name == "seeds":
            if not self.has_test_file:
                self.tests = []
                self.has_test_file = True
                self.notify("Started test.jsonl: from now on only its rows are held out.", timeout=6)
            self.tests.append(row)
        else:
            self.seeds.append(row)
        self._save(tests=True)
        self._after_change((name, index))

    def action_switch_tab(self) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        tabs.active = "tests-tab" if tabs.active == "seeds-tab" else "seeds-tab"
        self.table().focus()

    def action_focus_form(self) -> None:
        self.query_one("#description", TextArea).focus()

    def action_focus_table(self) -> None:
        self.table().focus()

    def action_import_file(self) -> None:
        from stillroom.tui.dialogs.path_prompt import PathPrompt

        def chosen(result) -> None:
            if not result:
                return
            path, where = result
            self.save_config()                     # the plan starts from the task as the form shows it
            task = copy.deepcopy(self.project.config.task)
            seeds = copy.deepcopy(self.seeds)
            tests = copy.deepcopy(self.tests) if self.has_test_file else []

            def read():
                from stillroom.core.importing import guess_columns, read_and_plan
                columns = guess_columns(path)
                rows, plan = read_and_plan(task, seeds, tests, path, "seeds" if where == "seeds" else "test",
                                           **columns)
                return rows, plan, columns
            self.app.run_in_thread(read, name="import", done=lambda result: self._imported(*result, where, path))
        self.app.push_screen(PathPrompt(
            "Import examples", str(Path.cwd()) + "/", label="File (OpenAI JSONL, Alpaca JSON/JSONL, ShareGPT, CSV)",
            choice_label="Add them to", choices=[("seeds", "seeds"), ("test examples", "tests")],
            choice=self.current(), must_exist=True, ok="Import",
            note="CSV columns are found by name (text, label, question, answer…)."), chosen)

    def _imported(self, rows: list[dict], plan, columns: dict, where: str, path: Path) -> None:
        self._remember("import")
        if where == "tests" and not self.has_test_file:
            self.tests, self.has_test_file = [], True
        target = self.rows_of(where)
        first = len(target)
        target.extend(rows)
        self._save(tests=where == "tests")
        if plan.notice:
            self._set_task(plan.task)
        self.query_one("#tabs", TabbedContent).active = f"{where}-tab"
        self._after_change((where, first))
        read = f" (columns {columns['input_column']} → {columns['output_column']})" if columns else ""
        self.notify(f"Imported {len(rows)} example(s) from {path.name}{read}.")
        if plan.notice:
            self.notify(f"{plan.notice[0].upper()}{plan.notice[1:]}; f edits the task.", timeout=10)

    def _set_task(self, inferred) -> None:
        """Take the task kind, labels and schema an import inferred into the form and stillroom.toml."""
        config = copy.deepcopy(self.project.config)
        for key in ("type", "labels", "json_schema", "input_name", "output_name"):
            setattr(config.task, key, copy.deepcopy(getattr(inferred, key)))
        try:
            self.project.save_config(config)
        except StillroomError as error:
            self.app.show_error(error, "Could not save the task settings")
            return
        with self.prevent(Input.Changed, TextArea.Changed, Select.Changed):
            self.query_one("#type", Select).value = config.task.type
            self.query_one("#labels", Input).value = ", ".join(config.task.labels)
            self.query_one("#schema", TextArea).text = config.task.json_schema
        self._show_type_fields()
        self._show_problem(None)
        self.app.notify_project_changed("config", self)

    def action_export_file(self) -> None:
        from stillroom.tui.dialogs.path_prompt import PathPrompt
        name = self.current()

        def chosen(result) -> None:
            if not result:
                return
            path, fmt = result
            rows = self.rows_of(name)
            try:
                records.write_rows(path, rows, fmt)
            except StillroomError as error:
                self.app.show_error(error, "Could not export")
                return
            self.notify(f"Wrote {len(rows)} example(s) to {path}.")
        self.app.push_screen(PathPrompt(
            f"Export {name}", str(self.project.exports_dir / f"{name}.jsonl"), label="File",
            choice_label="Format", choices=[("OpenAI messages", "openai"), ("Alpaca", "alpaca"),
                                            ("ShareGPT", "sharegpt")], ok="Export"), chosen)

    # ------------------------------------------------------------------ task settings
    def _show_type_fields(self) -> None:
        task_type = self.query_one("#type", Select).value
        classification = kind_named(task_type).uses_labels
        for widget_id in ("#labels", "#labels-label", "#chips"):
            self.query_one(widget_id).display = classification
        extraction = kind_named(task_type).uses_schema or bool(self.query_one("#schema", TextArea).text.strip())
        for widget_id in ("#schema", "#schema-label"):
            self.query_one(widget_id).display = extraction

    def form_config(self):
        config = copy.deepcopy(self.project.config)
        task = config.task
        task.name = self.query_one("#name", Input).value.strip() or task.name
        task.type = self.query_one("#type", Select).value
        task.labels = [l.strip() for l in self.query_one("#labels", Input).value.split(",") if l.strip()]
        task.json_schema = self.query_one("#schema", TextArea).text.strip()
        task.description = self.query_one("#description", TextArea).text.strip()
        task.system_prompt = self.query_one("#system", TextArea).text.strip()
        return config

    def _form_changed(self) -> None:
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.set_timer(0.5, self.save_config)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("name", "labels"):
            self._form_changed()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area.id in ("schema", "description", "system"):
            self._form_changed()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "type":
            self._show_type_fields()
            self._form_changed()

    def save_config(self) -> bool:
        """Validate the form and save stillroom.toml atomically; False (and the reason shown) if invalid."""
        if self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None
        config = self.form_config()
        if config.task == self.project.config.task:
            self._show_problem(None)
            return True
        try:
            parse_config(render_toml(config), self.project.config_path)
        except StillroomError as error:
            message = str(error).split(": ", 1)[-1]
            self._show_problem(message)
            return False
        try:
            self.project.save_config(config)
        except StillroomError as error:
            self.app.show_error(error, "Could not save the task settings")
            return False
        self._show_problem(None)
        self.refresh_tables()
        self.app.notify_project_changed("config", self)
        return True

    def _show_problem(self, problem: str | None) -> None:
        self._config_problem = problem
        widget = self.query_one("#config-problem", Static)
        widget.update(Text(problem or "saved", style="" if problem else "dim"))
        widget.set_class(bool(problem), "bad")

    def unsaved_problem(self) -> str | None:
        if self.form_config().task != self.project.config.task:
            if not self.save_config():
                return f"the task settings are not valid, so they were not saved: {self._config_problem}"
        return None

    def flush(self) -> None:
        self.save_config()

    def on_project_changed(self, what: str) -> None:
        if what == "seeds":
            self.load_rows()
