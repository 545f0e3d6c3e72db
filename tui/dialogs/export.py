"""Export a run: LoRA adapter, merged safetensors, GGUF (with its check score on the test set) or an
Ollama Modelfile; progress and elapsed time while it works, the resulting paths when it is done."""
from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Footer, ProgressBar, RadioButton, RadioSet, Static

from stillroom import themes
from stillroom.core import events as ev
from stillroom.tui.bridge import JobEnded, JobEvent, job_done, run_job
from stillroom.tui.format import fmt_float, fmt_seconds

FORMATS = [
    ("adapter", "LoRA adapter (PEFT)", "the adapter folder as training saved it; small, needs the base model"),
    ("merged", "merged safetensors", "base + adapter in one Hugging Face folder"),
    ("gguf", "GGUF for llama.cpp", "merged, converted, then scored on the test set next to the merged model"),
    ("ollama", "Ollama Modelfile", "GGUF plus a Modelfile: ollama create NAME -f Modelfile"),
]


def check_line(check: dict) -> str:
    metric = check.get("metric", "score")
    return (f"GGUF check on {check.get('examples', 0)} test examples: {metric} "
            f"{fmt_float(check.get('gguf'))} (GGUF) vs {fmt_float(check.get('merged'))} (merged), "
            f"answers agree {check.get('agreement', 0) * 100:.0f}%")


class ExportDialog(ModalScreen[None]):
    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical {
        width: 84; max-width: 96%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    ExportDialog #export-title { text-style: bold; margin-bottom: 1; }
    ExportDialog RadioSet { width: 1fr; height: auto; border: none; background: $surface; padding: 0; }
    ExportDialog #export-help { height: 1; color: $text-muted; margin: 0 0 1 2; }
    ExportDialog #export-options { height: auto; }
    ExportDialog Checkbox { border: none; background: $surface; padding: 0; width: auto; margin-right: 2; }
    ExportDialog #export-progress-line { height: 1; margin-top: 1; }
    ExportDialog #export-progress { width: 1fr; }
    ExportDialog #export-progress Bar { width: 1fr; }
    ExportDialog #export-elapsed { width: 10; content-align: right middle; color: $text-muted; }
    ExportDialog #export-status { height: auto; color: $text-muted; }
    ExportDialog #export-result { height: auto; margin-top: 1; }
    """
    BINDINGS = [
        Binding("ctrl+s,s", "start", "Export"),
        Binding("escape", "close", "Close / stop"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.job = None                 # the export's job (core.job_kinds.export_job)
        self.exporting = False          # from action_start until its JobEnded is handled
        self.started_at: float | None = None
        self.stage = ""
        self.result = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Export run {self.run_id}"), id="export-title")
            with RadioSet(id="export-format"):
                for n, (key, title, _help) in enumerate(FORMATS):
                    yield RadioButton(title, value=key == "gguf", id=f"fmt-{key}")
            yield Static("", id="export-help")
            with Horizontal(id="export-options"):
                yield Checkbox("q8_0 (else f16)", value=True, id="export-q8")
                yield Checkbox("check the GGUF on the test set", value=True, id="export-check")
            with Horizontal(id="export-progress-line"):
                yield ProgressBar(id="export-progress", show_eta=False, show_percentage=True)
                yield Static("", id="export-elapsed")
            yield Static("s or ctrl+s exports · esc closes (or stops an export)", id="export-status")
            yield Static("", id="export-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#export-progress", ProgressBar).update(total=1, progress=0)
        self.show_help()
        self.set_interval(1.0, self.tick)
        radios = self.query_one(RadioSet)
        for _ in range([k for k, _t, _h in FORMATS].index("gguf")):
            radios.action_next_button()          # the highlight starts on the chosen format
        radios.focus()

    @property
    def format(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return pressed.id.removeprefix("fmt-") if pressed is not None else "gguf"

    def show_help(self) -> None:
        help_text = next(h for k, _t, h in FORMATS if k == self.format)
        self.query_one("#export-help", Static).update(Text(help_text))

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.show_help()

    @property
    def running(self) -> bool:
        return self.exporting

    def action_start(self) -> None:
        if self.running:
            return
        self.started_at = time.monotonic()
        self.result = None
        self.stage = "starting…"
        self.query_one("#export-result", Static).update("")
        self.query_one("#export-progress", ProgressBar).update(total=None, progress=0)
        fmt = self.format
        quant = "q8_0" if self.query_one("#export-q8", Checkbox).value else "f16"
        check = self.query_one("#export-check", Checkbox).value
        self.app.set_job(f"exporting {fmt}")
        from stillroom.core.job_kinds import export_job, export_result
        # The merge, the conversion and the GGUF check (llama.cpp) run in the job's own process.
        job = self.job = export_job(self.app.workbench.project.root, self.run_id, fmt, quant=quant, check=check)
        self.exporting = True
        run_job(self, "export", lambda on_event: export_result(job.run(on_event)))
        self.tick()

    def on_job_event(self, message: JobEvent) -> None:
        if message.job != "export":
            return
        message.stop()
        event = message.event
        bar = self.query_one("#export-progress", ProgressBar)
        if isinstance(event, ev.Status):
            self.stage = event.message
        elif isinstance(event, ev.ExportProgress):
            self.stage = event.stage + (f" {event.done}/{event.total}" if event.total else "")
            if event.total:
                bar.update(total=event.total, progress=event.done)
            else:
                bar.update(total=None)
        self.tick()

    def tick(self) -> None:
        if self.started_at is None:
            return
        self.query_one("#export-elapsed", Static).update(fmt_seconds(time.monotonic() - self.started_at)
                                                         if self.running else "")
        if self.running:
            self.query_one("#export-status", Static).update(Text(self.stage))

    def on_job_ended(self, message: JobEnded) -> None:
        if message.job != "export":
            return
        message.stop()
        self.exporting = False
        self.app.set_job("")
        elapsed = fmt_seconds(time.monotonic() - (self.started_at or time.monotonic()))
        bar = self.query_one("#export-progress", ProgressBar)
        status = self.query_one("#export-status", Static)
        from stillroom.core.errors import Cancelled
        if message.error is None:
            self.result = message.result
            bar.update(total=1, progress=1)
            status.update(Text(f"done in {elapsed}"))
            text = Text()
            for path in self.result.paths:
                text.append("→ ", style=themes.color(self.app, "mark-right"))
                text.append(str(path) + "\n")
            if self.result.check:
                text.append(check_line(self.result.check), style="bold")
            self.query_one("#export-result", Static).update(text)
            job_done(self, f"Export ({self.result.format}) of {self.run_id} done in {elapsed}.",
                     title="Export")
        elif isinstance(message.error, Cancelled):
            status.update("stopped")
            bar.update(total=1, progress=0)
        else:
            status.update("failed")
            self.app.show_error(message.error, "Export failed")

    def action_close(self) -> None:
        if not self.running:
            self.dismiss(None)
            return
        from stillroom.tui.dialogs.confirm import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes and self.running:
                self.job.stop()
                self.query_one("#export-status", Static).update("stopping…")
        self.app.push_screen(ConfirmDialog("An export is running. Stop it? Nothing half-written is kept.",
                                           yes="Stop export", no="Keep going"), answered)
