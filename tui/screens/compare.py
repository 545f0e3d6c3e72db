"""Compare: evaluate a run, read the headline (teacher · base · tuned · gap closed), and go through every
test example side by side with filters; enter shows the three answers in full.

The evaluation runs as a job in a child process (core.job_kinds.evaluation_job), so keys are answered at once while torch and
llama.cpp use every core; only an injected teacher (see `begin`) makes it run in a thread."""
from __future__ import annotations

import asyncio
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker

from stillroom import themes
from stillroom.core import compare
from stillroom.core import events as ev
from stillroom.core.errors import StillroomError
from stillroom.core.evaluate import MODELS, TITLES
from stillroom.core.records import one_line
from stillroom.tui.bridge import JobEnded, job_done, run_job
from stillroom.tui.format import fmt_float, fmt_percent, fmt_seconds
from stillroom.tui.screens.base import WorkbenchScreen
from stillroom.tui.widgets import run_picker

FILTER_KEYS = [("a", "all"), ("w", "student-wrong"), ("t", "teacher-right"), ("d", "disagree")]
CHIPS = {"all": "all", "student-wrong": "student wrong", "teacher-right": "teacher right, student wrong",
         "disagree": "disagree with teacher"}
KEY_NAMES = {"all": "All", "student-wrong": "Student wrong", "teacher-right": "Only teacher right",
             "disagree": "Disagree"}


class CompareScreen(WorkbenchScreen):
    DEFAULT_CSS = """
    CompareScreen #cmp-top { height: 1; padding: 0 1; margin-top: 1; }
    CompareScreen #cmp-top Label { width: auto; padding: 0 1 0 0; }
    CompareScreen #cmp-run { width: 42; margin-right: 2; }
    CompareScreen #cmp-progress { width: 30; margin-right: 1; display: none; }
    CompareScreen.-running #cmp-progress { display: block; }
    CompareScreen #cmp-progress Bar { width: 1fr; }
    CompareScreen #cmp-state { width: 1fr; color: $text-muted; }
    CompareScreen #cmp-headline { height: auto; min-height: 4; max-height: 6; padding: 0 1; margin-top: 1;
                                  background: $surface; }
    CompareScreen #cmp-filters { height: 1; padding: 0 1; margin-top: 1; }
    CompareScreen #cmp-chips { width: 1fr; }
    CompareScreen #cmp-search { width: 24; }
    CompareScreen #cmp-table { height: 1fr; margin-top: 1; background: $surface; }
    CompareScreen #cmp-preview { height: 5; padding: 0 1; border-top: hkey $panel-lighten-1; }
    """
    MODE = "compare"
    LABEL = "Compare"
    BINDINGS = [
        Binding("e", "evaluate", "Evaluate"),
        Binding("x", "stop", "Stop"),
        Binding("i", "improve", "Improve"),
        *[Binding(key, f"filter('{name}')", KEY_NAMES[name], show=key != "a") for key, name in FILTER_KEYS],
        Binding("slash", "search", "Search", key_display="/"),
        Binding("enter", "open", "Answers"),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.run_id: str | None = None
        self.result = None            # EvalResult
        self.filter = "all"
        self.search = ""
        self.shown: list[dict] = []
        self.worker: Worker | None = None
        self.job = None               # the latest evaluation's job (core.job_kinds.evaluation_job)
        self.evaluating = False       # from begin() until its JobEnded is handled
        self.started_at: float | None = None
        self.progress_text = ""
        self.input_width = 38
        self.answer_width: int | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="cmp-top"):
            yield Label("run")
            yield Select([], id="cmp-run", compact=True, prompt="no finished run yet")
            yield ProgressBar(id="cmp-progress", show_eta=False, show_percentage=True)
            yield Static("", id="cmp-state")
        yield Static("", id="cmp-headline")
        with Horizontal(id="cmp-filters"):
            yield Static("", id="cmp-chips")
            yield Input("", id="cmp-search", compact=True, placeholder="/ search text")
        yield DataTable(id="cmp-table", cursor_type="row")
        yield Static("", id="cmp-preview")

    def set_columns(self, width: int) -> None:
        """Answer columns of 16 cells (12 when narrow); the input takes what is left."""
        table = self.query_one("#cmp-table", DataTable)
        answer = 16 if width >= 110 else 12
        self.input_width = max(16, width - 4 - 4 * answer - 6 * 2 - 3)
        self.answer_width = answer
        table.clear(columns=True)
        table.add_column("#", key="n", width=4)
        table.add_column("input", key="input", width=self.input_width)
        table.add_column("reference", key="reference", width=answer)
        for key in MODELS:
            table.add_column(key, key=key, width=answer)        # a role's key is its short title

    def on_resize(self, event) -> None:
        if getattr(self, "answer_width", None) is not None:
            self.set_columns(event.size.width)
            self.refresh_table()

    def on_mount(self) -> None:
        table = self.query_one("#cmp-table", DataTable)
        self.set_columns(self.app.size.width)
        self.load_runs(self.workbench.selected_run)
        # The state line is drawn when the state changes; the clock only redraws it while evaluating (a
        # clock that also wrote the idle line made the picture depend on how long the screen had been up).
        self.set_interval(1.0, lambda: self.tick() if self.running else None)
        # The right/wrong marks take their colours from the theme: redraw them when it changes.
        # The headline's gap colour and muted text come from the theme too.
        self.watch(self.app, "theme", lambda _theme: (self.refresh_headline(), self.refresh_table()), init=False)
        table.focus()

    # ------------------------------------------------------------------ runs
    def load_runs(self, prefer: str | None = None) -> None:
        runs = run_picker.finished_runs(self.project)
        ids = [r.run_id for r in runs]
        evaluated = [r.run_id for r in runs if r.evaluated]
        choice = run_picker.first_of(ids, prefer, self.run_id, evaluated[-1] if evaluated else None,
                                     ids[-1] if ids else None)
        options = [(f"{r.run_id}{'' if r.evaluated else ' (not evaluated)'}", r.run_id) for r in reversed(runs)]
        # The prompt is also the list's first line: with runs to choose from it must not say there are none.
        run_picker.fill(self, self.query_one("#cmp-run", Select), options, choice,
                        prompt="choose a run" if options else "no finished run yet")
        self.show_run(choice)

    def on_run_selected(self, run_id: str | None) -> None:
        if self.is_mounted and not self.running:
            self.load_runs(run_id)

    def on_screen_resume(self) -> None:
        if not self.running:
            self.load_runs(self.workbench.selected_run or self.run_id)

    def on_select_changed(self, event: Select.Changed) -> None:
        value = event.select.value          # the current value: a queued Changed may be stale
        if event.select.id != "cmp-run":
            return
        if event.select.is_blank():
            # The prompt line is not a run: keep the run on show selected.
            if self.run_id is not None:
                with self.prevent(Select.Changed):
                    event.select.value = self.run_id
            return
        if value != self.run_id:
            if self.running:
                self.notify("An evaluation is running; its results appear when it ends.", severity="warning")
                return
            self.show_run(str(value))

    def show_run(self, run_id: str | None) -> None:
        from stillroom.core.evaluate import read_eval
        self.run_id = run_id
        self.result = None
        if run_id is not None:
            try:
                self.result = read_eval(self.project, run_id)
            except StillroomError:
                self.result = None
        self.refresh_headline()
        self.refresh_table()
        self.tick()

    # ------------------------------------------------------------------ display
    def refresh_headline(self) -> None:
        from stillroom.core.evaluate import prompted_warning, verdict
        from stillroom.core.metrics import METRIC_NAMES
        text = Text()
        muted = themes.muted(self.app) or "dim"
        if self.result is None:
            if self.run_id is None:
                text.append("No finished run yet. Train one on the Train screen (4).", style=muted)
            elif self.running:
                text.append(f"Evaluating run {self.run_id}…\n", style="bold")
                text.append("The teacher, the base student and the tuned student answer every held-out "
                            "example; x stops.", style=muted)
            else:
                text.append(f"Run {self.run_id} has not been evaluated yet.\n", style="bold")
                text.append("Press e to evaluate it: the teacher, the base student and the tuned student "
                            "answer every held-out example.", style=muted)
            self.query_one("#cmp-headline", Static).update(text)
            return
        m = self.result.metrics
        head = m["headline"]
        for key in MODELS:
            value = m["models"][key].get(head)
            text.append(f"{key} ", style=muted)
            text.append(fmt_float(value), style="bold")
            text.append("  ·  ", style=muted)
        gap = m["gap_closed"]
        text.append("gap closed ", style=muted)
        if gap.get("value") is None:
            text.append("undefined", style="bold")
        else:
            good = gap["value"] >= 0.8
            text.append(f"{gap['value'] * 100:.0f}%", style=f"bold {themes.color(self.app, 'mark-right' if good else 'accent')}")
            if gap.get("ci_low") is not None:
                text.append(f" [{gap['ci_low'] * 100:.0f}% to {gap['ci_high'] * 100:.0f}%]", style=muted)
        text.append("\n")
        self.baseline_line(text, m, muted)
        text.append(f"{METRIC_NAMES.get(head, head)} on {m['n']} held-out examples ({m.get('test_source', '')})"
                    f" · run {m.get('run', self.run_id)} · {m['models']['tuned'].get('name', '')}", style=muted)
        text.append("\n")
        warning = prompted_warning(m)      # when prompting beats this run, that is the line to read
        text.append(warning or verdict(gap), style=themes.color(self.app, "accent") if warning else muted)
        self.query_one("#cmp-headline", Static).update(text)

    def baseline_line(self, text: Text, m: dict, muted: str) -> None:
        """The baselines' scores and the figures beside the headline (evaluations since they existed)."""
        from stillroom.core.evaluate import TITLES, interval, fmt_signed, model_keys
        keys = [k for k in model_keys(m) if k not in MODELS]
        if not keys and not m.get("gap_closed_vs_prompted"):
            return
        for key in keys:
            text.append(f"{TITLES[key]} ", style=muted)
            text.append(fmt_float(m["models"][key].get(m["headline"])), style="bold")
            text.append("  ·  ", style=muted)
        prompted = m.get("gap_closed_vs_prompted") or {}
        over = m.get("tuned_minus_prompted") or {}
        if prompted.get("value") is None and over:
            # The best prompted baseline beats the teacher: no gap to close, so the plain difference.
            text.append(f"tuned − {TITLES.get(over.get('baseline'), 'best prompted')} ", style=muted)
            text.append(fmt_signed(over.get("value")), style="bold")
            text.append(interval(over, fmt_signed), style=muted)
        elif prompted:
            text.append("vs best prompted ", style=muted)
            value = prompted.get("value")
            text.append("undefined" if value is None else f"{value * 100:.0f}%", style="bold")
            text.append(interval(prompted, lambda v: f"{v * 100:.0f}%"), style=muted)
        added = m.get("rows_added")
        if added:
            text.append("  ·  tuned − seed-only ", style=muted)
            text.append(fmt_signed(added.get("value")), style="bold")
            text.append(interval(added, fmt_signed), style=muted)
        text.append("\n")

    def refresh_table(self) -> None:
        table = self.query_one("#cmp-table", DataTable)
        table.clear()
        rows = self.result.records if self.result is not None else []
        counts = compare.counts(rows)
        chips = Text()
        for key, name in FILTER_KEYS:
            label = f" {key} {CHIPS[name]} {counts[name]} "
            chips.append(label, style="reverse bold" if name == self.filter else "")
            chips.append(" ")
        self.query_one("#cmp-chips", Static).update(chips)
        self.shown = compare.filter_rows(rows, self.filter, self.search)
        right, wrong = themes.color(self.app, "mark-right"), themes.color(self.app, "mark-wrong")
        for row in self.shown:
            cells = [Text(str(row.get("index", ""))), Text(one_line(row.get("input", ""), self.input_width)),
                     Text(one_line(row.get("reference", ""), self.answer_width))]
            for key in MODELS:
                ok = compare.is_right(row, key)
                cell = Text("✓ " if ok else "✗ ", style=right if ok else wrong)
                cell.append(one_line(compare.answer(row, key), self.answer_width - 2) or "(empty)")
                cells.append(cell)
            table.add_row(*cells, key=str(row.get("index")))
        self.refresh_preview()

    def refresh_preview(self) -> None:
        text = Text(no_wrap=False)
        muted = themes.muted(self.app) or "dim"
        row = self.current_row()
        if row is None:
            if self.result is not None:
                text.append("No example matches this filter.", style=muted)
        else:
            text.append(one_line(row.get("input", "")), style="")
            text.append("\nreference ", style=muted)
            text.append(row.get("reference", ""), style="bold")
            for key in MODELS:
                text.append(f"  {key} ", style=muted)
                text.append(one_line(compare.answer(row, key), 30) or "(empty)")
            text.append("\nenter: the three answers in full, side by side", style=muted)
        self.query_one("#cmp-preview", Static).update(text)

    def current_row(self) -> dict | None:
        table = self.query_one("#cmp-table", DataTable)
        if not self.shown or not table.row_count:
            return None
        return self.shown[min(table.cursor_row, len(self.shown) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.refresh_preview()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    # ------------------------------------------------------------------ actions
    def action_filter(self, name: str) -> None:
        self.filter = name
        self.refresh_table()

    def action_search(self) -> None:
        self.query_one("#cmp-search", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#cmp-table", DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "cmp-search":
            self.search = event.value
            self.refresh_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_focus_table()

    def action_open(self) -> None:
        row = self.current_row()
        if row is None:
            return
        from stillroom.tui.dialogs.answers import AnswersDialog
        metric = self.result.metrics["headline"] if self.result else "score"
        self.app.push_screen(AnswersDialog(self.shown, self.shown.index(row), metric))

    @property
    def running(self) -> bool:
        return self.evaluating

    def action_improve(self) -> None:
        from stillroom.tui.dialogs.improve import ImproveDialog
        self.app.push_screen(ImproveDialog())

    def action_evaluate(self) -> None:
        if self.run_id is None:
            self.notify("No finished run to evaluate; train one first (4).", severity="warning")
            return
        if self.running:
            from stillroom.tui.dialogs.confirm import ConfirmDialog

            def answered(yes: bool | None) -> None:
                if yes:
                    self.stop_job()
                    self.run_worker(self._restart_when_stopped(), group="evaluate-restart")
            self.app.push_screen(ConfirmDialog("An evaluation is running. Stop it and start again? Its answers "
                                               "so far are discarded.", yes="Restart", no="Keep it"), answered)
            return
        if self.workbench.generating:
            self.notify("The teacher is generating; evaluate when it is done (or paused).", severity="warning")
            return
        self.begin()

    async def _restart_when_stopped(self) -> None:
        while self.running:               # until the stopped evaluation's end has been handled
            await asyncio.sleep(0.05)
        self.begin()

    def begin(self) -> None:
        from stillroom.core.job_kinds import evaluation_job, evaluation_result
        root = self.project.root
        # The students and the teacher load in the job's own process, which keeps the interface
        # responsive while torch and llama.cpp take every core, and survives a crash in either.
        job = self.job = evaluation_job(root, self.run_id, teacher_factory=self.workbench.teacher_factory)
        self.evaluating = True
        self.started_at = time.monotonic()
        self.progress_text = "starting…"
        self.query_one("#cmp-progress", ProgressBar).update(total=None, progress=0)
        self.app.set_job("evaluating")
        self.add_class("-running")
        self.worker = run_job(self, "evaluate", lambda on_event: evaluation_result(root, job.run(on_event)),
                              on_event=self.evaluation_event, on_end=self.evaluation_ended)
        self.refresh_headline()
        self.tick()

    def stop_job(self) -> None:
        if self.evaluating:
            self.job.stop()

    def action_stop(self) -> None:
        if self.running:
            self.stop_job()
            self.progress_text = "stopping…"
            self.tick()

    def tick(self) -> None:
        if self.started_at is None:
            state = ""
        else:
            elapsed = fmt_seconds(time.monotonic() - self.started_at)
            state = f"{self.progress_text}  {elapsed}" if self.running else self.progress_text
        if not self.running and self.result is not None and not state:
            state = "e evaluates again"
        self.query_one("#cmp-state", Static).update(Text(state))

    def evaluation_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Status):
            self.progress_text = event.message
        elif isinstance(event, ev.EvalProgress):
            self.progress_text = f"{TITLES.get(event.model, event.model)} {event.done}/{event.total}"
            self.query_one("#cmp-progress", ProgressBar).update(total=max(1, event.total), progress=event.done)
        elif isinstance(event, ev.TrainStep):        # the seed-only student, trained on first use
            self.progress_text = f"seed-only student training {event.step}/{event.max_steps}"
            self.query_one("#cmp-progress", ProgressBar).update(total=max(1, event.max_steps), progress=event.step)
        self.tick()

    def evaluation_ended(self, message: JobEnded) -> None:
        self.evaluating = False
        self.app.set_job("")
        self.remove_class("-running")
        elapsed = fmt_seconds(time.monotonic() - (self.started_at or time.monotonic()))
        bar = self.query_one("#cmp-progress", ProgressBar)
        from stillroom.core.errors import Cancelled
        if message.error is None:
            result = message.result
            self.progress_text = f"evaluated in {elapsed}"
            bar.update(total=1, progress=1)
            self.run_id = result.run_id
            self.result = result
            self.load_runs(result.run_id)
            gap = result.metrics["gap_closed"].get("value")
            job_done(self, f"Evaluation of {result.run_id} done: gap closed "
                     f"{fmt_percent(gap, 'undefined')} ({elapsed}).", title="Compare")
        elif isinstance(message.error, Cancelled):
            self.progress_text = "stopped"
            bar.update(total=1, progress=0)
        else:
            self.progress_text = "failed"
            self.app.show_error(message.error, "Evaluation stopped")
        self.refresh_headline()
        self.tick()

    def unsaved_problem(self) -> str | None:
        return "an evaluation is running (its answers so far are lost)" if self.running else None

    def flush(self) -> None:
        if self.running:
            self.stop_job()
