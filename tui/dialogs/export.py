"""Export a run: LoRA adapter, merged safetensors, GGUFs in the ticked quant types (with their quant table:
size, llama.cpp speed, score and agreement on the test set) or an Ollama Modelfile; progress and elapsed
time while it works, the resulting paths when it is done."""
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
from stillroom.core.export import DEFAULT_QUANT, QUANTS
from stillroom.tui.bridge import JobEnded, JobEvent, job_done, run_job
from stillroom.tui.format import fmt_seconds, quant_table

FORMATS = [
    ("adapter", "LoRA adapter (PEFT)", "the adapter folder as training saved it; small, needs the base model"),
    ("merged", "merged safetensors", "base + adapter in one Hugging Face folder"),
    ("gguf", "GGUF for llama.cpp", "merged, then a GGUF per ticked type, each scored on the test set"),
    ("ollama", "Ollama Modelfile", "GGUF + Modelfile (first ticked type): ollama create NAME -f Modelfile"),
]


class ExportDialog(ModalScreen[None]):
    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical {
        width: 84; max-width: 96%; height: auto; max-height: 90%; overflow-y: auto;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    ExportDialog #export-title { text-style: bold; margin-bottom: 1; }
    ExportDialog RadioSet { width: 1fr; height: auto; border: none; background: $surface; padding: 0; }
    ExportDialog #export-help { height: 1; color: $text-muted; margin: 0 0 1 2; }
    ExportDialog #export-options, ExportDialog #export-quants { height: auto; }
    ExportDialog Checkbox { border: none; background: $surface; padding: 0; width: auto; margin-right: 2; }
    ExportDialog #export-quants Checkbox { margin-right: 1; }
    ExportDialog #export-quants-label { width: 5; color: $text-muted; }
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
            with Horizontal(id="export-quants"):
                yield Static("GGUF", id="export-quants-label")
                for quant in QUANTS:
                    yield Checkbox(quant, value=quant == DEFAULT_QUANT, id=f"quant-{quant}")
            with Horizontal(id="export-options"):
                yield Checkbox("check each GGUF on the test set (quant table)", value=True, id="export-check")
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

    @property
    def quants(self) -> list[str]:
        """The ticked GGUF types, smallest first (an Ollama Modelfile uses the first)."""
        return [q for q in QUANTS if self.query_one(f"#quant-{q}", Checkbox).value]

    def show_help(self) -> None:
        help_text = next(h for k, _t, h in FORMATS if k == self.format)
        self.query_one("#export-help", Static).update(Text(help_text))
        no_gguf = self.format in ("adapter", "merged")
        self.query_one("#export-quants").disabled = no_gguf
        self.query_one("#export-check", Checkbox).disabled = no_gguf

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.show_help()

    @property
    def running(self) -> bool:
        return self.exporting

    def action_start(self) -> None:
        if self.running:
            return
        fmt, quants = self.format, self.quants
        if fmt in ("gguf", "ollama") and not quants:
            self.notify("Tick at least one GGUF type.", severity="warning")
            return
        self.started_at = time.monotonic()
        self.result = None
        self.stage = "starting…"
        self.query_one("#export-result", Static).update("")
        self.query_one("#export-progress", ProgressBar).update(total=None, progress=0)
        check = self.query_one("#export-check", Checkbox).value
        self.app.set_job(f"exporting {fmt}")
        from stillroom.core.job_kinds import export_job, export_result
        # The merge, the conversion and the GGUF check (llama.cpp) run in the job's own process.
        job = self.job = export_job(self.app.workbench.project.root, self.run_id, fmt, quant=quants, check=check)
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
            text = self.paths_text(self.result.paths)
            if self.result.quants:
                from rich.console import Group
                text = Group(text, quant_table(self.result.quants))
            self.query_one("#export-result", Static).update(text)
            job_done(self, f"Export ({self.result.format}) of {self.run_id} done in {elapsed}.",
                     title="Export")
        elif isinstance(message.error, Cancelled):
            status.update("stopped")
            bar.update(total=1, progress=0)
        else:
            status.update("failed")
            self.app.show_error(message.error, "Export failed")

    def paths_text(self, paths: list) -> Text:
        """The written paths, one a line; files of one folder under that folder, so they fit a narrow screen."""
        mark = themes.color(self.app, "mark-right")
        text = Text()
        folders = {path.parent for path in paths}
        if len(paths) > 1 and len(folders) == 1:
            text.append(f"in {folders.pop()}/\n")
            for path in paths:
                text.append("→ ", style=mark)
                text.append(path.name + "\n")
            return text
        for path in paths:
            text.append("→ ", style=mark)
            text.append(str(path) + "\n")
        return text

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
