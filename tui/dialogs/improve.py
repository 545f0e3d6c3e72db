"""The improve loop from the Train and Compare screens: rounds of probe, mistakes, targeted rows, retrain
and evaluation (core.improve, run as core.job_kinds.improve_job); the step in progress with its progress
and elapsed time, the mistake groups as they are found, and each round's report. After a round's
targeting the dialog asks whether to review the new rows first (Review opens filtered to them) or to
retrain at once."""
from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, ProgressBar, Static

from stillroom.core import events as ev
from stillroom.tui.bridge import JobEnded, JobEvent, deliver, job_done, run_job
from stillroom.tui.format import fmt_seconds


class ImproveDialog(ModalScreen[None]):
    DEFAULT_CSS = """
    ImproveDialog { align: center middle; }
    ImproveDialog > Vertical {
        width: 100; max-width: 98%; height: 90%; border: thick $primary; background: $surface; padding: 1 2;
    }
    ImproveDialog #improve-title { text-style: bold; }
    ImproveDialog #improve-next { color: $text-muted; margin-bottom: 1; }
    ImproveDialog #improve-settings { height: 1; }
    ImproveDialog #improve-settings Label { width: auto; margin-right: 1; }
    ImproveDialog #improve-settings Input { width: 8; margin-right: 3; }
    ImproveDialog #improve-progress-line { height: 1; margin-top: 1; }
    ImproveDialog #improve-progress { width: 1fr; }
    ImproveDialog #improve-progress Bar { width: 1fr; }
    ImproveDialog #improve-elapsed { width: 10; content-align: right middle; color: $text-muted; }
    ImproveDialog #improve-status { height: 1; color: $text-muted; }
    ImproveDialog #improve-log { height: 1fr; margin-top: 1; }
    """
    BINDINGS = [
        Binding("s", "start", "Start / resume"),
        Binding("x", "stop", "Stop"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.job = None                 # core.job_kinds.improve_job
        self.improving = False          # from action_start until its JobEnded is handled
        self.started_at: float | None = None
        self.stage = ""
        self.lines: list[str] = []      # mistake groups and round reports, newest last
        self.result = None

    @property
    def project(self):
        return self.app.workbench.project

    def compose(self) -> ComposeResult:
        improve = self.project.config.improve
        with Vertical():
            yield Static("Improve: probe the student, target its mistakes, retrain", id="improve-title")
            yield Static("", id="improve-next")
            with Horizontal(id="improve-settings"):
                yield Label("rounds")
                yield Input("1", id="improve-rounds", type="integer", compact=True)
                yield Label("probe inputs")
                yield Input(str(improve.probe), id="improve-probe", type="integer", compact=True)
                yield Label(f"rows a round {improve.rows} · retrain {improve.retrain}")
            with Horizontal(id="improve-progress-line"):
                yield ProgressBar(id="improve-progress", show_eta=False, show_percentage=True)
                yield Static("", id="improve-elapsed")
            yield Static("", id="improve-status")
            with VerticalScroll(id="improve-log"):
                yield Static("", id="improve-text")
            yield Footer()

    def on_mount(self) -> None:
        self.query_one("#improve-progress", ProgressBar).update(total=1, progress=0)
        self.show_next()
        self.set_interval(1.0, self.tick)
        self.query_one("#improve-log", VerticalScroll).focus()     # s starts; tab reaches the numbers

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    def show_next(self) -> None:
        from stillroom.core.errors import StillroomError
        from stillroom.core.improve import next_step
        try:
            text = f"s {next_step(self.project)}"
        except StillroomError as error:
            text = error.one_line()
        self.query_one("#improve-next", Static).update(Text(text))

    # ------------------------------------------------------------------ running
    def _number(self, input_id: str) -> int | None:
        value = self.query_one(f"#{input_id}", Input).value.strip()
        return int(value) if value.isdigit() and int(value) > 0 else None

    def action_start(self) -> None:
        if self.improving:
            return
        if self.app.workbench.generating:
            self.notify("The teacher is generating rows; stop it first (Generate screen).", severity="warning")
            return
        rounds, probe = self._number("improve-rounds"), self._number("improve-probe")
        if rounds is None or probe is None:
            self.notify("Rounds and probe inputs must be whole numbers of at least 1.", severity="warning")
            return
        from stillroom.core.errors import StillroomError
        from stillroom.core.improve import check_ready, unfinished_chain
        try:
            check_ready(self.project)
        except StillroomError as error:
            self.app.show_error(error, "Nothing to improve")
            return
        # A resumed loop finishes the round it was in before counting new ones.
        resuming = unfinished_chain(self.project) is not None
        from stillroom.core.job_kinds import improve_job, improve_result
        job = self.job = improve_job(self.project.root, rounds=None if resuming and rounds == 1 else rounds,
                                     review=True, probe=probe,
                                     teacher_factory=self.app.workbench.teacher_factory)
        self.improving, self.started_at, self.stage = True, time.monotonic(), "starting…"
        self.app.set_job("improving")
        self.query_one("#improve-progress", ProgressBar).update(total=None, progress=0)
        run_job(self, "improve", lambda on_event: improve_result(job.run(on_event)),
                on_event=self.improve_event, on_end=self.improve_ended)
        self.tick()

    def on_job_event(self, message: JobEvent) -> None:
        deliver(message)          # to improve_event, named by run_job

    def on_job_ended(self, message: JobEnded) -> None:
        deliver(message)          # to improve_ended

    def improve_event(self, event: ev.Event) -> None:
        bar = self.query_one("#improve-progress", ProgressBar)
        if isinstance(event, ev.ImproveStep):
            self.stage = f"round {event.round}/{event.rounds}: {event.step}"
            bar.update(total=None, progress=0)
        elif isinstance(event, ev.GenerationProgress):
            bar.update(total=event.target, progress=event.kept)
            self.stage = self.stage.split(" · ")[0] + f" · {event.kept}/{event.target} kept, {event.rejected} rejected"
        elif isinstance(event, ev.TrainStep):
            bar.update(total=event.max_steps, progress=event.step)
            loss = f", loss {event.loss:.3f}" if event.loss is not None else ""
            self.stage = self.stage.split(" · ")[0] + f" · step {event.step}/{event.max_steps}{loss}"
        elif isinstance(event, ev.EvalProgress):
            bar.update(total=event.total, progress=event.done)
            self.stage = self.stage.split(" · ")[0] + f" · {event.model} {event.done}/{event.total}"
        elif isinstance(event, ev.Status):
            self.stage = self.stage.split(" · ")[0] + f" · {event.message}"
        elif isinstance(event, ev.MistakesFound):
            from stillroom.tui.commands.improve import mistakes_text
            self.add_text(mistakes_text(event))
        elif isinstance(event, ev.RoundReport):
            from stillroom.tui.commands.improve import report_text
            self.add_text(report_text(event.report))
        self.tick()

    def add_text(self, text: str) -> None:
        self.lines.append(text)
        self.query_one("#improve-text", Static).update(Text("\n\n".join(self.lines)))
        self.query_one("#improve-log", VerticalScroll).scroll_end(animate=False)

    def tick(self) -> None:
        if self.started_at is None:
            return
        self.query_one("#improve-elapsed", Static).update(
            fmt_seconds(time.monotonic() - self.started_at) if self.improving else "")
        if self.improving:
            self.query_one("#improve-status", Static).update(Text(self.stage))

    def improve_ended(self, message: JobEnded) -> None:
        self.improving = False
        self.app.set_job("")
        for what in ("synthetic", "runs"):
            self.app.notify_project_changed(what)
        bar = self.query_one("#improve-progress", ProgressBar)
        status = self.query_one("#improve-status", Static)
        self.show_next()
        if message.error is not None:
            status.update("failed")
            self.app.show_error(message.error, "Improve failed")
            return
        result = self.result = message.result
        if result.cancelled:
            status.update(Text("stopped; s resumes at the step it was in"))
            return
        bar.update(total=1, progress=1)
        if result.review_round:
            status.update(Text(f"round {result.review_round}: targeted rows written"))
            self.ask_review(result.review_round, result.review_filter)
            return
        status.update(Text(f"done: {len(result.rounds)} round(s) in "
                           f"{fmt_seconds(time.monotonic() - (self.started_at or time.monotonic()))}"))
        job_done(self, f"Improve: {len(result.rounds)} round(s) done.", title="Improve")

    def ask_review(self, round_no: int, flt: str) -> None:
        from stillroom.tui.dialogs.confirm import ConfirmDialog

        def answered(review: bool | None) -> None:
            if review:
                self.dismiss(None)
                self.app.call_next(open_review, self.app, flt)
            else:
                self.action_start()
        self.app.push_screen(ConfirmDialog(
            f"Round {round_no} wrote its targeted rows. Review and prune them before the retrain? "
            f"Review first opens Review filtered to '{flt}' (press i on Train or Compare to retrain "
            f"afterwards); Retrain now goes on at once.", yes="Review first", no="Retrain now"), answered)

    def action_stop(self) -> None:
        if not self.improving or self.job is None or self.job.stop_requested:
            return
        self.job.stop()
        self.stage = "stopping after the current piece of work…"
        self.tick()

    def action_close(self) -> None:
        if not self.improving:
            self.dismiss(None)
            return
        from stillroom.tui.dialogs.confirm import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                self.action_stop()
        self.app.push_screen(ConfirmDialog("The improve loop is running. Stop it? (It resumes where it "
                                           "stopped.)", yes="Stop"), answered)


async def open_review(app, flt: str) -> None:
    """Review, filtered to `flt`."""
    await app.action_goto("review")
    screen = app.screen
    if getattr(screen, "MODE", "") == "review":
        screen.query_one("#filter", Input).value = flt
