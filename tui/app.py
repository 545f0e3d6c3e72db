"""The Stillroom workbench: one App, its screens, and the session state they share (tui.workbench).

`make_app` is the only way in, for the CLI and the tests alike. Nothing heavy is imported here, and
no model runs in this process: torch, transformers and llama_cpp are loaded by jobs in child
processes (core.jobs), whose events reach the screens through tui.bridge.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from stillroom.core.errors import StillroomError
from stillroom.core.events import GenerationProgress
from stillroom.core.project import Project
from stillroom.tui import settings
from stillroom.tui.bridge import JobEnded, JobEvent
from stillroom.tui.workbench import Workbench

if TYPE_CHECKING:
    from stillroom.tui.screens.base import WorkbenchScreen


# Each screen's module is imported when the screen is first shown (or the help lists its keys), so the
# first frame imports only the screen it shows.
def _projects():
    from stillroom.tui.screens.projects import ProjectsScreen
    return ProjectsScreen


def _task():
    from stillroom.tui.screens.task import TaskScreen
    return TaskScreen


def _generate():
    from stillroom.tui.screens.generate import GenerateScreen
    return GenerateScreen


def _review():
    from stillroom.tui.screens.review import ReviewScreen
    return ReviewScreen


def _train():
    from stillroom.tui.screens.train import TrainScreen
    return TrainScreen


def _compare():
    from stillroom.tui.screens.compare import CompareScreen
    return CompareScreen


def _chat():
    from stillroom.tui.screens.chat import ChatScreen
    return ChatScreen


@dataclass(frozen=True)
class ScreenSpec:
    """One workbench screen: the key that shows it, its mode name, its title, and `screen`, which returns
    its class (a WorkbenchScreen subclass); None shows a placeholder saying `hint`."""
    key: str
    mode: str
    title: str
    screen: Optional[Callable[[], type["WorkbenchScreen"]]]
    hint: str = ""


SCREENS: list[ScreenSpec] = [
    ScreenSpec("1", "task", "Task", _task),
    ScreenSpec("2", "generate", "Generate", _generate),
    ScreenSpec("3", "review", "Review", _review),
    ScreenSpec("4", "train", "Train", _train),
    ScreenSpec("5", "compare", "Compare", _compare),
    ScreenSpec("6", "chat", "Chat", _chat),
]
PROJECTS = ScreenSpec("0", "projects", "Projects", _projects)


class StillroomApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "Stillroom"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("0", "goto('projects')", "Projects", show=False),
        *[Binding(spec.key, f"goto('{spec.mode}')", spec.title, show=False) for spec in SCREENS],
    ]

    def __init__(self, path: Path | None = None, *, teacher_factory: str | None = None) -> None:
        super().__init__()
        self.start_path = Path(path) if path else None
        self.workbench = Workbench(self, teacher_factory=teacher_factory, show_job=self.set_job)
        self.screens_by_mode: dict[str, WorkbenchScreen] = {}
        self.job = ""                    # the header's line about the running job
        self._pending_error: tuple | None = None

    # ------------------------------------------------------------------ start
    async def on_mount(self) -> None:
        from stillroom.themes import DEFAULT_THEME, THEMES
        for theme in THEMES:
            self.register_theme(theme)
        wanted = settings.theme()
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME
        self.theme_changed_signal.subscribe(self, lambda theme: settings.set_theme(theme.name))
        self._add_mode(PROJECTS)
        # Open the project before the first frame, so the app starts on its Task screen.
        if self.start_path is None or not await self.open_project(self.start_path):
            await self.switch_mode("projects")
            if self._pending_error is not None:
                self.show_error(*self._pending_error)
                self._pending_error = None

    def make_header(self, mode: str):
        from stillroom.tui.widgets.header import WorkbenchHeader
        header = WorkbenchHeader([(PROJECTS.key, PROJECTS.mode, PROJECTS.title)] +
                                 [(s.key, s.mode, s.title) for s in SCREENS])
        header.active = mode
        header.job = self.job
        project = self.workbench.project
        if project is not None:
            header.project_name = project.name
            header.models = self.models_line()
        return header

    def models_line(self) -> str:
        from stillroom.core.models import resolve
        project = self.workbench.project
        config = project.config

        def show(ref: str, student: bool = False) -> str:
            try:
                model = resolve(ref, project_dir=project.root, check=False)
            except StillroomError:
                return ref
            # A GGUF student is de-quantized once and trained in transformers.
            return f"{model.name} (transformers)" if student else model.display
        return f"teacher {show(config.teacher.model)} → student {show(config.student.model, student=True)}"

    def refresh_headers(self) -> None:
        from stillroom.tui.widgets.header import WorkbenchHeader
        project = self.workbench.project
        for screen in self.screens_by_mode.values():
            for header in screen.query(WorkbenchHeader):
                header.job = self.job
                header.project_name = project.name if project else ""
                header.models = self.models_line() if project else ""

    def _add_mode(self, spec: ScreenSpec) -> None:
        def build() -> Screen:
            from stillroom.tui.screens.base import PlaceholderScreen
            if spec.screen is None:
                screen = PlaceholderScreen(spec.mode, spec.title, spec.hint)
            else:
                try:
                    screen = spec.screen()()
                except Exception as error:      # a broken screen must not take the workbench down
                    from stillroom.tui.dialogs.error import save_traceback
                    save_traceback(error)
                    screen = PlaceholderScreen(spec.mode, spec.title,
                                               f"It failed to load: {type(error).__name__}: {error}")
            self.screens_by_mode[spec.mode] = screen
            return screen
        self.add_mode(spec.mode, build)

    def screen_for(self, mode: str) -> WorkbenchScreen | None:
        return self.screens_by_mode.get(mode)

    # ------------------------------------------------------------------ projects
    async def open_project(self, path: Path, *, create: str | None = None, demo: bool = False) -> bool:
        """Open (or create) a project and show its Task screen. Errors arrive as a dialog."""
        path = Path(path).expanduser()
        current = self.workbench.project
        if current is not None and current.root.resolve() == path.resolve():
            self.switch_mode("task")
            return True
        try:
            if create is not None or demo:
                project = Project.create(path, create or "classification", demo=demo)
            else:
                project = Project.open(path)
            lock = project.lock("stillroom workbench").acquire()
        except StillroomError as error:
            if self.current_mode == "_default":      # nothing on screen yet: show it once drawn
                self._pending_error = (error, "Could not open the project")
            else:
                self.show_error(error, "Could not open the project")
            return False
        if not await self.close_project():
            lock.release()
            return False
        self.workbench.open(project, lock)
        settings.remember_project(project.root, project.name)
        for spec in SCREENS:
            self._add_mode(spec)
        self.refresh_headers()
        await self.switch_mode("task")
        return True

    async def close_project(self) -> bool:
        """Stop generation, save every pending edit, release the lock. False if the user said no."""
        if self.workbench.project is None:
            return True
        await self.workbench.stop_generation_and_wait()
        for spec in SCREENS:
            screen = self.screens_by_mode.get(spec.mode)
            if screen is not None:
                screen.flush()
        if self.current_mode != "projects":
            await self.switch_mode("projects")
        for spec in SCREENS:
            self.screens_by_mode.pop(spec.mode, None)
            await self.remove_mode(spec.mode)
        self.workbench.close()
        self.refresh_headers()
        return True

    def notify_project_changed(self, what: str, source: Screen | None = None) -> None:
        for screen in list(self.screens_by_mode.values()):
            if screen is not source:
                screen.on_project_changed(what)
        if what == "config":
            self.refresh_headers()

    def select_run(self, run_id: str | None) -> None:
        """Make `run_id` the run that Compare, Chat and Export show, on every screen already built."""
        self.workbench.selected_run = run_id
        for screen in list(self.screens_by_mode.values()):
            screen.on_run_selected(run_id)

    # ------------------------------------------------------------------ navigation
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "goto" and isinstance(self.screen, ModalScreen):
            return False
        return True

    async def action_goto(self, mode: str) -> None:
        if mode not in self._modes:
            self.notify("Open or create a project first.", severity="warning")
            return
        if isinstance(self.screen, ModalScreen):
            return
        await self.switch_mode(mode)

    def action_help(self) -> None:
        from stillroom.tui.dialogs.help import HelpDialog
        if isinstance(self.screen, ModalScreen):
            return
        sections = [("Everywhere", list(self.BINDINGS) +
                     [Binding("ctrl+p", "command_palette", "Command palette: every screen and action")])]
        for spec in [PROJECTS] + SCREENS:
            if spec.screen is None:
                continue
            try:
                cls = spec.screen()
            except Exception:
                continue
            sections.append((f"{spec.key} {spec.title}", list(cls.BINDINGS)))
        from stillroom.tui.widgets.row_table import RowTable
        sections.append(("Review table", RowTable.BINDINGS + [Binding("space", "", "Select / unselect row")]))
        self.push_screen(HelpDialog(sections))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for spec in [PROJECTS] + SCREENS:
            if spec.mode in self._modes:
                yield SystemCommand(f"Go to {spec.title}", f"Show the {spec.title} screen (key {spec.key})",
                                    partial(self.call_next, self.action_goto, spec.mode))
        current = screen
        label = getattr(current, "LABEL", "")
        for binding in getattr(current, "BINDINGS", []):
            if isinstance(binding, tuple):
                binding = Binding(*binding)
            if binding.description and binding.action:
                yield SystemCommand(f"{label}: {binding.description}" if label else binding.description,
                                    f"key {binding.key_display or binding.key}",
                                    partial(current.run_action, binding.action))
        yield SystemCommand("Help", "Every key of every screen (?)", self.action_help)
        yield from super().get_system_commands(screen)

    # ------------------------------------------------------------------ errors
    def show_error(self, error: BaseException, title: str = "") -> None:
        from stillroom.tui.dialogs.error import ErrorDialog
        self.push_screen(ErrorDialog(error, title))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.show_error(event.worker.error)

    def run_in_thread(self, fn: Callable[[], object], *, name: str, group: str = "jobs",
                done: Callable[[object], None] | None = None) -> Worker:
        """Run blocking Python work (file I/O, no model) in a thread; `done(result)` runs on the UI thread;
        errors become the dialog. Model work runs as a job instead (tui.bridge.run_job)."""
        def body():
            result = fn()
            if done is not None:
                self.call_from_thread(done, result)
            return result
        return self.run_worker(body, name=name, group=group, thread=True, exit_on_error=False)

    # ------------------------------------------------------------------ generation (tui.workbench runs it)
    def on_job_event(self, message: JobEvent) -> None:
        if message.job != "generate":
            return
        event = message.event
        if isinstance(event, GenerationProgress) and self.job.startswith("generating"):
            self.set_job(f"generating {event.kept}/{event.target}")
        for screen in list(self.screens_by_mode.values()):
            screen.on_generation_event(event)

    def on_job_ended(self, message: JobEnded) -> None:
        """Every job's end passes here: generation's is handled; any other job's failure that its
        screen did not handle becomes the one error dialog."""
        if message.job == "generate":
            self._generation_ended(message.error)
        elif message.error is not None:
            self.show_error(message.error)

    def _generation_ended(self, error: BaseException | None = None) -> None:
        self.workbench.generation_ended(error)
        self.set_job("")
        for screen in list(self.screens_by_mode.values()):
            screen.generation_ended(error)
        if error is not None:
            self.show_error(error, "Generation stopped")

    def set_job(self, text: str) -> None:
        self.job = text
        self.refresh_headers()

    # ------------------------------------------------------------------ quit
    async def action_quit(self) -> None:
        from stillroom.tui.dialogs.confirm import ConfirmDialog
        from stillroom.tui.dialogs.row_form import RowFormDialog
        problems = []
        for screen in self.screen_stack:
            if isinstance(screen, RowFormDialog) and screen.dirty:
                problems.append("the example being edited has unsaved changes")
        for screen in self.screens_by_mode.values():
            problem = screen.unsaved_problem()
            if problem:
                problems.append(problem)
        if problems:
            question = ("Quit and lose this edit?\n\n" + "\n".join(f"• {p}" for p in problems))

            def answered(yes: bool | None) -> None:
                if yes:
                    self.call_next(self._quit_now)
            self.push_screen(ConfirmDialog(question, yes="Quit anyway", no="Go back"), answered)
            return
        await self._quit_now()

    async def _quit_now(self) -> None:
        if self.workbench.generating:
            self.set_job("stopping generation…")
        try:
            await self.close_project()
        finally:
            self.exit()


def make_app(path: Path | str | None = None, *, teacher_factory: str | None = None) -> StillroomApp:
    """The workbench on `path` (a project folder), or on the project list when no path is given.

    `teacher_factory` names a function "module:function" that returns the teacher TextModel for a
    Project (tests use it); each job that needs a teacher imports and calls it in its own process. By
    default the project's configured teacher is loaded there.
    """
    return StillroomApp(Path(path) if path else None, teacher_factory=teacher_factory)
