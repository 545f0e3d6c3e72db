"""SVG snapshots of the Train, Compare and Chat screens in each Stillroom theme at 120x40, plus the
side-by-side answers and the export dialog. Update with: pytest tests/tui --snapshot-update"""
import pytest
from textual.widgets import Input

from modelscreens import TEACHER
from workbench import wait_for
from stillroom.themes import THEMES
from stillroom.tui.app import make_app

SIZE = (120, 40)
SCREENS = {"train": ("4", "TrainScreen"), "compare": ("5", "CompareScreen"), "chat": ("6", "ChatScreen")}


def goto(key: str, cls_name: str, theme: str, then=()):
    async def run_before(pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.workbench.project is not None)
        app.theme = theme
        await pilot.press(key)
        await wait_for(pilot, lambda: type(app.screen).__name__ == cls_name)
        for k in then:
            await pilot.press(k)
        for box in app.screen.query(Input):
            box.cursor_blink = False          # a blinking cursor would make the picture flicker
        await app.workers.wait_for_complete()  # the screen's loaders fill it before the picture
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        await pilot.wait_for_scheduled_animations()
    return run_before


@pytest.mark.parametrize("theme", [t.name for t in THEMES])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_in_theme(snap_compare, project_with_run, screen, theme):
    key, cls_name = SCREENS[screen]
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    assert snap_compare(app, terminal_size=SIZE, run_before=goto(key, cls_name, theme))


def test_answers_side_by_side(snap_compare, project_with_run):
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    assert snap_compare(app, terminal_size=SIZE,
                        run_before=goto("5", "CompareScreen", "stillroom-dark", then=("d", "enter")))


def test_export_dialog(snap_compare, project_with_run):
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    assert snap_compare(app, terminal_size=SIZE,
                        run_before=goto("4", "TrainScreen", "stillroom-light", then=("e",)))
