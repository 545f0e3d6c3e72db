"""Train: the settings at hand, a live loss chart, the numbers of the running step, and the past runs.

Training runs as a job in a child process (core.job_kinds.training_job): the interface stays responsive while torch
uses every core, and stopping (x) asks the trainer to save a checkpoint before it exits, so the run
can be resumed (r) from the runs list.
"""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Label, ProgressBar, Select, Static

from stillroom import themes
from stillroom.core import events as ev
from stillroom.core.errors import StillroomError
from stillroom.core.runs import eval_summary, read_json, run_objective
from stillroom.tui.bridge import JobEnded, job_done, run_job
from stillroom.tui.format import fmt_float, fmt_percent, fmt_seconds
from stillroom.tui.screens.base import WorkbenchScreen
from stillroom.tui.widgets.loss_chart import LossChart

# (input id, training setting, label, kind)
FIELDS = [
    ("lora_rank", "lora_rank", "LoRA rank", int),
    ("epochs", "epochs", "epochs", float),
    ("max_steps", "max_steps", "max steps (0 = epochs)", int),
    ("learning_rate", "learning_rate", "learning rate", float),
    ("batch_size", "batch_size", "batch size", int),
    ("max_length", "max_length", "max length (tokens)", int),
]


class TrainScreen(WorkbenchScreen):
    DEFAULT_CSS = """
    TrainScreen #train-body { height: 1fr; }
    TrainScreen #train-settings { width: 25; padding: 0 1; border-right: vkey $panel-lighten-1; }
    TrainScreen #train-settings Label { margin-top: 1; }
    TrainScreen #train-settings Input, TrainScreen #train-settings Select { width: 1fr; }
    TrainScreen #train-data { height: auto; color: $text-muted; }
    TrainScreen #train-main { width: 1fr; }
    TrainScreen #loss-chart { height: 1fr; }
    TrainScreen #train-progress-line { height: 1; padding: 0 1; }
    TrainScreen #train-progress { width: 1fr; }
    TrainScreen #train-progress Bar { width: 1fr; }
    TrainScreen #train-state { width: 16; content-align: right middle; }
    TrainScreen #runs-title { padding: 0 1; margin-top: 1; height: 1; }
    TrainScreen #runs { height: 9; background: $surface; }
    TrainScreen #train-stats { width: 29; padding: 0 1; border-left: vkey $panel-lighten-1; }
    TrainScreen #train-numbers { height: auto; }
    TrainScreen.-narrow #train-settings { width: 18; }
    TrainScreen.-narrow #train-stats { width: 23; }
    """
    MODE = "train"
    LABEL = "Train"
    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("c", "compare", "Compare"),
        Binding("h", "chat", "Chat"),
        Binding("e", "export", "Export"),
        Binding("i", "improve", "Improve"),
        Binding("t", "focus_settings", "Settings"),
        Binding("escape", "focus_runs", "Runs", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.job = None               # the latest training's job (core.job_kinds.training_job)
        self.training = False         # from begin() until its JobEnded is handled
        self.state = "idle"
        self.run_id: str | None = None
        self.started_at: float | None = None
        self.last: ev.TrainStep | None = None
        self.eval_loss: float | None = None
        self.checkpoint = "–"
        self.shape: ev.TrainStarted | None = None
        self.objective = "sft"        # the running run's training.objective, from its config.json
        self.status = ""
        self.runs = []
        self.view = None          # (RunSummary, metrics lines) of the highlighted run while idle
        self.last_at = 0.0        # when the last step arrived (elapsed keeps counting between steps)

    # ------------------------------------------------------------------ layout
    def compose_body(self) -> ComposeResult:
        cfg = self.project.config.training
        with Horizontal(id="train-body"):
            with Vertical(id="train-settings"):
                yield Static("Settings", classes="pane-title")
                yield Label("method")
                yield Select([("LoRA adapter", "lora"), ("full fine-tune", "full")], value=cfg.method,
                             allow_blank=False, compact=True, id="method")
                for input_id, name, label, kind in FIELDS:
                    yield Label(label)
                    yield Input(_fmt_setting(getattr(cfg, name)), id=input_id, compact=True,
                                type="integer" if kind is int else "number")
                yield Static("", id="train-data")
            with Vertical(id="train-main"):
                yield LossChart(id="loss-chart")
                with Horizontal(id="train-progress-line"):
                    yield ProgressBar(id="train-progress", show_eta=False, show_percentage=True)
                    yield Static("", id="train-state")
                yield Static("Runs", classes="pane-title", id="runs-title")
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=False)
            with Vertical(id="train-stats"):
                yield Static("Now", classes="pane-title")
                yield Static("", id="train-numbers")

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < 110, "-narrow")

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < 110, "-narrow")
        table = self.query_one("#runs", DataTable)
        table.add_columns("run", "status", "step", "loss", "val", "tuned", "gap")
        self.refresh_runs()
        self.refresh_numbers()
        self.refresh_data_line()
        self.set_interval(1.0, self.tick)
        table.focus()

    # ------------------------------------------------------------------ runs
    def refresh_runs(self, select: str | None = None) -> None:
        from stillroom.core.runs import list_runs
        try:
            self.runs = list_runs(self.project)
        except Exception as error:  # noqa: BLE001 - a damaged run folder must not break the screen
            self.app.show_error(error, "Could not list the runs")
            self.runs = []
        table = self.query_one("#runs", DataTable)
        current = select or self.highlighted_run_id()
        table.clear()
        for run in reversed(self.runs):
            summary = eval_summary(run.path)
            status = Text(run.status)
            if run.status == "finished":
                status.stylize(themes.color(self.app, "mark-right"))
            elif run.status in ("failed", "interrupted"):
                status.stylize(themes.color(self.app, "mark-wrong"))
            table.add_row(
                Text(run.run_id), status, f"{run.step}/{run.max_steps}",
                fmt_float(run.final_loss), fmt_float(run.final_eval_loss),
                fmt_float(summary.tuned) if summary else "–",
                fmt_percent(summary.gap) if summary else "–",
                key=run.run_id)
        self.query_one("#runs-title", Static).update(
            f"Runs ({len(self.runs)})   enter compare · r resume · e export · h chat")
        if current and current in {r.run_id for r in self.runs}:
            table.move_cursor(row=table.get_row_index(current))
        self.show_highlighted()

    def _show_live_step(self, step: int, max_steps: int) -> None:
        """The runs list reads the step from state.json, written at checkpoints; the running run's row
        follows the live step instead."""
        table = self.query_one("#runs", DataTable)
        if self.run_id is None or self.run_id not in table.rows:
            return
        from textual.coordinate import Coordinate
        table.update_cell_at(Coordinate(table.get_row_index(self.run_id), 2), f"{step}/{max_steps}")

    def highlighted_run_id(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key
        except Exception:  # noqa: BLE001
            return None
        return key.value

    def highlighted_run(self):
        run_id = self.highlighted_run_id()
        return next((r for r in self.runs if r.run_id == run_id), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_highlighted()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_compare()

    def show_highlighted(self) -> None:
        """When no job runs, the chart shows the highlighted run's curve."""
        if self.running:
            return
        run = self.highlighted_run()
        chart = self.query_one(LossChart)
        if run is None:
            chart.clear(title="no runs yet: press s to train")
            return
        from stillroom.core.runs import read_metrics
        lines = read_metrics(run.path)
        chart.load(lines, run.max_steps, f"{run.run_id} · {run.status}")
        self.view = (run, lines)
        self.refresh_numbers()

    # ------------------------------------------------------------------ numbers
    @property
    def running(self) -> bool:
        return self.training

    def refresh_data_line(self) -> None:
        try:
            kept = len(self.project.kept_rows())
            seeds = len(self.project.seeds()) if self.project.config.training.include_seeds else 0
        except StillroomError:
            kept = seeds = 0
        text = Text()
        text.append("\ntraining rows\n", style="bold")
        text.append(f"{kept} kept + {seeds} seeds", style="")
        self.query_one("#train-data", Static).update(text)

    def tick(self) -> None:
        if self.running:
            self.refresh_numbers()

    def refresh_numbers(self) -> None:
        muted = themes.muted(self.app) or "dim"
        text = Text()

        def row(name: str, value: str, style: str = "") -> None:
            if name == "run":              # the run id on a line of its own, above the numbers
                text.append(value + "\n", style="bold")
                return
            text.append(f"{name:<11}", style=muted)
            text.append(value + "\n", style=style)

        last = self.last
        shape = self.shape
        if not self.running and self.view is not None and (self.run_id is None or
                                                           self.view[0].run_id != self.run_id):
            self._numbers_of(self.view, row, muted)
            self.query_one("#train-numbers", Static).update(text)
            self.query_one("#train-state", Static).update(Text(self.state, style=muted))
            run = self.view[0]
            self.query_one("#train-progress", ProgressBar).update(total=max(1, run.max_steps), progress=run.step)
            return
        row("run", self.run_id or "new run")
        row("state", self.state, "bold")
        if shape is not None:
            row("device", f"{shape.device} {shape.precision}")
            row("rows", f"{shape.train_rows} + {shape.validation_rows} val")
            row("objective", self.objective)
        text.append("\n")
        row("step", f"{last.step} / {last.max_steps}" if last else "–", "bold")
        row("epoch", f"{last.epoch:.2f}" if last else "–")
        loss = next((p[1] for p in reversed(self.query_one(LossChart).train)), None) if self.running or last \
            else None
        row("loss", fmt_float(loss, 4), "bold")
        row("eval loss", fmt_float(self.eval_loss, 4))
        lr = self._lr
        row("lr", f"{lr:.2e}" if lr is not None else "–")
        row("tokens/s", f"{last.tokens_per_second:,.0f}" if last else "–")
        elapsed = last.elapsed if last else None
        if self.running and last is not None:
            elapsed = last.elapsed + time.monotonic() - self.last_at      # keeps counting between steps
        elif self.running and self.started_at is not None:
            elapsed = time.monotonic() - self.started_at
        row("elapsed", fmt_seconds(elapsed) if elapsed is not None else "–")
        row("eta", fmt_seconds(last.eta) if last and last.eta is not None and self.running else "–")
        row("checkpoint", self.checkpoint)
        if self.status:
            text.append("\n")
            text.append(self.status, style=muted)
        self.query_one("#train-numbers", Static).update(text)
        state = self.query_one("#train-state", Static)
        state.update(Text(self.state, style="bold" if self.running else muted))
        bar = self.query_one("#train-progress", ProgressBar)
        if last is not None:
            bar.update(total=max(1, last.max_steps), progress=last.step)
        elif shape is not None:
            bar.update(total=max(1, shape.max_steps), progress=shape.step)
        else:
            bar.update(total=None if self.running else 1, progress=0)

    _lr: float | None = None

    def _numbers_of(self, view, row, muted) -> None:
        """The numbers of a past run (the highlighted one)."""
        run, lines = view
        last = next((m for m in reversed(lines) if m.get("loss") is not None), {})
        row("run", run.run_id)
        row("state", self.state, "bold")
        row("status", run.status)
        row("method", run.method)
        row("objective", run.objective)
        row("step", f"{run.step} / {run.max_steps}", "bold")
        row("epoch", f"{last['epoch']:.2f}" if last.get("epoch") is not None else "–")
        row("loss", fmt_float(run.final_loss, 4), "bold")
        row("eval loss", fmt_float(run.final_eval_loss, 4))
        lr = last.get("learning_rate")
        row("lr", f"{lr:.2e}" if lr is not None else "–")
        tps = last.get("tokens_per_second")
        row("tokens/s", f"{tps:,.0f}" if tps else "–")
        row("elapsed", fmt_seconds(last.get("elapsed")) if last.get("elapsed") is not None else "–")
        summary = eval_summary(run.path)
        if summary is not None:
            row("tuned", f"{fmt_float(summary.tuned)} {summary.metric}")
            row("gap closed", fmt_percent(summary.gap))

    # ------------------------------------------------------------------ settings
    def overrides(self) -> dict:
        """The settings in the form, checked like stillroom.toml; raises StillroomError."""
        out: dict = {"method": self.query_one("#method", Select).value}
        for input_id, name, label, kind in FIELDS:
            raw = self.query_one(f"#{input_id}", Input).value.strip()
            try:
                out[name] = kind(raw)
            except ValueError:
                raise StillroomError(f"{label} must be a {'whole ' if kind is int else ''}number, not {raw!r}",
                                     "fix it in the settings on the left (t)") from None
        from stillroom.core.train import apply_overrides
        apply_overrides(self.project.config, out)      # validates
        return out

    def save_settings(self) -> None:
        from stillroom.core.train import apply_overrides
        config = apply_overrides(self.project.config, self.overrides())
        if config.training != self.project.config.training:
            self.project.save_config(config)
            self.app.notify_project_changed("config", source=self)

    def on_project_changed(self, what: str) -> None:
        if what == "runs" and not self.running:
            self.refresh_runs()
        if what == "config" and not self.running:
            cfg = self.project.config.training
            self.query_one("#method", Select).value = cfg.method
            for input_id, name, _label, _kind in FIELDS:
                self.query_one(f"#{input_id}", Input).value = _fmt_setting(getattr(cfg, name))
        self.refresh_data_line()

    # ------------------------------------------------------------------ actions
    def action_start(self) -> None:
        if self.running:
            self.notify("A training run is in progress; stop it first (x).", severity="warning")
            return
        try:
            self.save_settings()
        except StillroomError as error:
            self.app.show_error(error, "Cannot start training")
            return
        self.begin(resume=None)

    def action_resume(self) -> None:
        if self.running:
            self.notify("A training run is in progress.", severity="warning")
            return
        run = self.highlighted_run()
        if run is None or not run.resumable:
            candidates = [r for r in self.runs if r.resumable]
            if not candidates:
                self.notify("No stopped run to resume; start a new one with s.", severity="warning")
                return
            run = candidates[-1]
        self.begin(resume=run.run_id)

    def begin(self, resume: str | None) -> None:
        from stillroom.core.job_kinds import training_job
        job = self.job = training_job(self.project.root, resume=resume)
        self.training = True
        self.state = "starting"
        self.status = f"resuming {resume}…" if resume else "starting the training process…"
        self.run_id = resume
        self.last = None
        self.shape = None
        self.eval_loss = None
        self._lr = None
        self.checkpoint = "–"
        self.started_at = time.monotonic()
        chart = self.query_one(LossChart)
        if resume:
            from stillroom.core.runs import read_metrics
            run = next((r for r in self.runs if r.run_id == resume), None)
            chart.load(read_metrics(self.project.runs_dir / resume), run.max_steps if run else 0, resume)
        else:
            chart.clear(title="new run")
        self.app.set_job("training")
        run_job(self, "train", job.run, on_event=self.training_event, on_end=self.training_ended)
        self.refresh_numbers()

    def action_stop(self) -> None:
        if not self.running:
            self.notify("No training is running.")
            return
        if self.job.stop_requested:
            return
        self.job.stop()
        self.state = "stopping"
        self.status = "saving a checkpoint, then stopping…"
        self.app.set_job("stopping training")
        self.refresh_numbers()

    def action_compare(self) -> None:
        run = self.highlighted_run()
        if run is None:
            self.notify("No run to compare yet.", severity="warning")
            return
        self.app.select_run(run.run_id)
        self.app.call_next(self.app.action_goto, "compare")

    def action_chat(self) -> None:
        run = self.highlighted_run()
        if run is not None and run.output_dir is not None:
            self.app.select_run(run.run_id)
        self.app.call_next(self.app.action_goto, "chat")

    def action_export(self) -> None:
        run = self.highlighted_run()
        if run is None or run.output_dir is None:
            self.notify("Pick a finished run to export (only finished runs have weights).", severity="warning")
            return
        from stillroom.tui.dialogs.export import ExportDialog
        self.app.push_screen(ExportDialog(run.run_id))

    def action_improve(self) -> None:
        if self.running:
            self.notify("Training is running; the improve loop trains on its own.", severity="warning")
            return
        from stillroom.tui.dialogs.improve import ImproveDialog
        self.app.push_screen(ImproveDialog())

    def action_focus_settings(self) -> None:
        self.query_one("#method", Select).focus()

    def action_focus_runs(self) -> None:
        self.query_one("#runs", DataTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    # ------------------------------------------------------------------ engine events
    def training_event(self, event: ev.Event) -> None:
        chart = self.query_one(LossChart)
        if isinstance(event, ev.Status):
            self.status = event.message
        elif isinstance(event, ev.TrainStarted):
            self.shape = event
            self.run_id = event.run_id
            self.objective = run_objective(read_json(Path(event.run_dir) / "config.json") or {})
            self.state = "training" if not self.job.stop_requested else "stopping"
            self.status = f"{event.method} on {event.train_rows} rows" + (
                f", {event.truncated} truncated" if event.truncated else "")
            chart.max_steps = event.max_steps
            chart.title = event.run_id
            chart.replot()
            self.refresh_runs(select=event.run_id)
        elif isinstance(event, ev.TrainStep):
            self.last = event
            self.last_at = time.monotonic()
            if event.loss is not None:
                chart.add_train(event.step, event.loss)
            if event.learning_rate is not None:
                self._lr = event.learning_rate
            if self.state == "training":
                self.app.set_job(f"training {event.step}/{event.max_steps}")
            self._show_live_step(event.step, event.max_steps)
        elif isinstance(event, ev.EvalStep):
            self.eval_loss = event.eval_loss
            chart.add_eval(event.step, event.eval_loss)
        elif isinstance(event, ev.CheckpointSaved):
            self.checkpoint = f"step {event.step}"
            self.refresh_runs(select=self.highlighted_run_id())
        elif isinstance(event, ev.TrainFinished):
            self.state = "stopped" if event.cancelled else "finished"
        self.refresh_numbers()

    def training_ended(self, message: JobEnded) -> None:
        self.training = False
        self.app.set_job("")
        result = message.result
        if message.error is not None:
            self.state = "failed"
            self.status = str(message.error)
            self.app.show_error(message.error, "Training stopped")
            job_done(self, "Training failed.", title="Train", severity="error")
        elif result:
            cancelled = result.get("cancelled")
            self.state = "stopped" if cancelled else "finished"
            loss = fmt_float(result.get("final_loss"))
            if cancelled:
                self.status = f"stopped at step {result['step']}; r resumes from the checkpoint"
                job_done(self, f"Training {result['run_id']} stopped at step {result['step']} "
                         f"(checkpoint saved).", title="Train")
            else:
                self.status = f"done in {fmt_seconds(result.get('elapsed'))}: enter compares, e exports"
                job_done(self, f"Training {result['run_id']} finished: loss {loss}, "
                         f"{fmt_seconds(result.get('elapsed'))}.", title="Train")
        self.refresh_runs(select=self.run_id)
        self.refresh_numbers()

    # ------------------------------------------------------------------ leaving
    def unsaved_problem(self) -> str | None:
        if self.running:
            return "a training run is in progress (quitting stops it; its checkpoint is kept)"
        return None

    def flush(self) -> None:
        """Stop a running training (it saves a checkpoint) and give it a moment to exit."""
        if self.job is not None and self.job.running:
            self.job.stop()
            if self.job.wait(timeout=20) is None:
                self.job.kill()


def _fmt_setting(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
