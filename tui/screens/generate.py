"""Generate: start, pause and stop the teacher; its text streams live; counters, rate and ETA."""
from __future__ import annotations

import copy
import time
from collections import Counter, deque

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, ProgressBar, Static

from stillroom.core import events as ev
from stillroom.core import records
from stillroom.core.errors import StillroomError
from stillroom import themes
from stillroom.tui.format import fmt_seconds
from stillroom.tui.screens.base import WorkbenchScreen
from stillroom.tui.widgets.stream_view import StreamView


def row_summary(row: dict | None, title: str, reason: str = "", reason_style: str = "") -> Text:
    text = Text()
    text.append(title, style="bold")
    if row is None:
        text.append("\nnone yet", style="dim")
        return text
    text.append(f"  {row.get('id', '')}", style="dim")
    if reason:
        text.append(f"  {reason}", style=reason_style)
    text.append("\n")
    text.append(records.one_line(records.user_text(row)))
    if row["messages"][-1]["role"] == "assistant":
        text.append("\n⇒ ", style="dim")
        text.append(records.answer_text(row), style="bold")
    return text


class GenerateScreen(WorkbenchScreen):
    MODE = "generate"
    LABEL = "Generate"
    AUTO_FOCUS = "#stream"
    BINDINGS = [
        Binding("s", "start", "Start / resume"),
        Binding("p", "pause", "Pause"),
        Binding("x", "stop", "Stop"),
        Binding("t", "focus_settings", "Settings"),
        Binding("escape", "focus_stream", "Stream", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kept = 0
        self.rejected: Counter = Counter()
        self.target = 0
        self.started_at: float | None = None
        self.kept_at_start = 0
        self.tokens_per_second = 0.0
        self.state = "idle"
        self.last_kept: dict | None = None
        self.last_rejected: dict | None = None
        self._recent_tokens: deque = deque()      # (time, tokens) streamed in the last few seconds
        self._last_rate = 0.0

    def compose_body(self) -> ComposeResult:
        gen = self.project.config.generation
        with Horizontal(id="gen-controls"):
            yield Label("target kept")
            yield Input("", id="target", compact=True, type="integer")
            yield Label("temperature")
            yield Input(str(gen.temperature), id="temperature", compact=True, type="number")
            yield Label("topics")
            yield Input(", ".join(gen.topics), id="topics", compact=True,
                        placeholder="optional, comma-separated")
            yield Static("", id="gen-state")
        with Horizontal(id="gen-body"):
            yield StreamView(id="stream")
            with Vertical(id="gen-stats"):
                yield Static("", id="counters")
                yield ProgressBar(id="progress", show_eta=False, show_percentage=True)
                yield Static("", id="rates")
        with Horizontal(id="gen-last"):
            yield Static("", id="last-kept")
            yield Static("", id="last-rejected")

    def on_mount(self) -> None:
        self.load_counts()
        self.query_one("#target", Input).value = str(self.kept + 20)
        self.set_interval(1.0, self.refresh_rates)
        self.refresh_all()
        self.query_one("#stream").can_focus = True
        self.query_one("#stream").focus()

    def load_counts(self) -> None:
        try:
            rows = self.project.synthetic()
        except StillroomError as error:
            self.app.show_error(error, "Could not read the generated rows")
            rows = []
        self.kept = sum(1 for r in rows if r.get("status") == "kept")
        self.rejected = Counter(r.get("reason") or "?" for r in rows if r.get("status") == "rejected")
        self.last_kept = next((r for r in reversed(rows) if r.get("status") == "kept"), None)
        self.last_rejected = next((r for r in reversed(rows) if r.get("status") == "rejected"), None)

    # ------------------------------------------------------------------ display
    def refresh_colours(self) -> None:
        self.refresh_all()

    def refresh_all(self) -> None:
        self.refresh_counters()
        self.refresh_rates()
        self.query_one("#last-kept", Static).update(row_summary(self.last_kept, "last kept"))
        reason = self.last_rejected.get("reason", "") if self.last_rejected else ""
        self.query_one("#last-rejected", Static).update(
            row_summary(self.last_rejected, "last rejected", reason, themes.color(self.app, "error")))

    def _target(self) -> int:
        try:
            return int(self.query_one("#target", Input).value)
        except ValueError:
            return 0

    def refresh_counters(self) -> None:
        target = self.target or self._target()
        text = Text()
        text.append("kept      ", style="dim")
        text.append(f"{self.kept}", style=f"bold {themes.color(self.app, 'success')}")
        text.append(f" / {target}\n" if target else "\n")
        text.append("rejected  ", style="dim")
        text.append(f"{sum(self.rejected.values())}\n", style="bold")
        for reason, n in self.rejected.most_common(8):
            text.append(f"  {reason:<17}{n:>5}\n", style="dim")
        self.query_one("#counters", Static).update(text)
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=max(target, 1), progress=min(self.kept, max(target, 1)))

    def live_rate(self, window: float = 10.0) -> float:
        """Teacher tokens per second over the last seconds of streaming (the last rate seen when the
        teacher is reading a prompt and writes nothing for a while)."""
        now = time.monotonic()
        while len(self._recent_tokens) > 1 and now - self._recent_tokens[0][0] > window:
            self._recent_tokens.popleft()
        if len(self._recent_tokens) >= 2:
            span = self._recent_tokens[-1][0] - self._recent_tokens[0][0]
            if span > 0:
                self._last_rate = sum(n for _, n in list(self._recent_tokens)[1:]) / span
        return self._last_rate

    def refresh_rates(self) -> None:
        text = Text()
        running = self.started_at is not None and self.state == "running"
        elapsed = time.monotonic() - self.started_at if self.started_at else None
        made = self.kept - self.kept_at_start
        eta = None
        if running and made > 0 and self.target:
            eta = elapsed / made * max(0, self.target - self.kept)
        rate = self.live_rate() if running else 0.0
        rate = rate or self.tokens_per_second
        text.append("tokens/s  ", style="dim")
        text.append(f"{rate:.1f}\n" if rate else "–\n")
        text.append("elapsed   ", style="dim")
        text.append(fmt_seconds(elapsed) + "\n" if elapsed is not None else "–\n")
        text.append("eta       ", style="dim")
        text.append(fmt_seconds(eta) + "\n" if eta is not None else "–\n")
        self.query_one("#rates", Static).update(text)
        state = self.query_one("#gen-state", Static)
        state.update(Text(self.state, style="bold" if self.state == "running" else "dim"))

    # ------------------------------------------------------------------ actions
    def _settings(self):
        """Validated (target, config) from the controls; raises StillroomError."""
        target = self._target()
        if target < 1:
            raise StillroomError("target kept rows must be a whole number of at least 1",
                                 "type a number in the target box (t)")
        try:
            temperature = float(self.query_one("#temperature", Input).value)
        except ValueError:
            raise StillroomError("temperature must be a number, e.g. 0.9") from None
        if temperature < 0:
            raise StillroomError("temperature must be at least 0")
        topics = [t.strip() for t in self.query_one("#topics", Input).value.split(",") if t.strip()]
        config = copy.deepcopy(self.project.config)
        config.generation.temperature = temperature
        config.generation.topics = topics
        return target, config

    def action_start(self) -> None:
        if self.workbench.generating:
            self.notify("Generation is already running.")
            return
        try:
            target, config = self._settings()
            if config.generation != self.project.config.generation:
                self.project.save_config(config)
        except StillroomError as error:
            self.app.show_error(error, "Cannot start generation")
            return
        if target <= self.kept:
            self.notify(f"{self.kept} rows are kept already; raise the target to generate more.",
                        severity="warning")
            return
        self.target = target
        self.started_at = time.monotonic()
        self.kept_at_start = self.kept
        self._recent_tokens.clear()
        self._last_rate = 0.0
        self.state = "running"
        self.workbench.start_generation(target)
        self.refresh_all()
        self.query_one("#stream").focus()

    def action_pause(self) -> None:
        if self.workbench.generating:
            self.workbench.pause_generation()
            self.state = "pausing…"
            self.refresh_rates()

    def action_stop(self) -> None:
        if self.workbench.generating:
            self.workbench.stop_generation()
            self.state = "stopping…"
            self.refresh_rates()

    def action_focus_settings(self) -> None:
        self.query_one("#target", Input).focus()

    def action_focus_stream(self) -> None:
        self.query_one("#stream").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "target" and self.state != "running":
            self.refresh_counters()

    # ------------------------------------------------------------------ engine events
    def on_generation_event(self, event: ev.Event) -> None:
        stream = self.query_one("#stream", StreamView)
        if isinstance(event, ev.TokenStreamed):
            stream.append_chunk(event.text, event.purpose, event.index)
            self._recent_tokens.append((time.monotonic(), event.tokens))
        elif isinstance(event, ev.CandidateStarted):
            stream.begin(event.index, event.label)
        elif isinstance(event, (ev.ExampleAccepted, ev.ExampleRejected)):
            kept = isinstance(event, ev.ExampleAccepted)
            stream.verdict(kept, event.row.get("reason", ""), records.synthetic_index(event.row))
            if kept:
                self.last_kept = event.row
            else:
                self.last_rejected = event.row
            self.refresh_all()
        elif isinstance(event, ev.GenerationProgress):
            self.kept, self.target = event.kept, event.target
            self.rejected = Counter(event.rejected_by_reason)
            self.tokens_per_second = event.tokens_per_second
            self.refresh_counters()
            self.refresh_rates()
        elif isinstance(event, ev.Status):
            stream.note(event.message)
        elif isinstance(event, ev.GenerationFinished):
            stream.settle("stopped" if event.cancelled else "not needed")
            stream.note(f"{'paused' if event.cancelled else 'done'}: {event.kept} kept / {event.target}, "
                        f"{event.rejected} rejected in all, {fmt_seconds(event.elapsed)}")

    def generation_ended(self, error: BaseException | None) -> None:
        was = self.state
        if error is not None:
            self.state = "failed"
        elif self.kept >= self.target > 0:
            self.state = "done"
            self.notify(f"Generation done: {self.kept} rows kept.", title="Generate")
        elif was.startswith("stopping"):
            self.state = "stopped"
        else:
            self.state = "paused"
        self.started_at = None if self.state == "done" else self.started_at
        self.refresh_all()
