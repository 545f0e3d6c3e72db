"""Themes: the Stillroom themes are registered, chosen from the command palette, remembered in the user
config, and every model screen also works under Textual's own themes."""
import pytest

from modelscreens import TEACHER
from workbench import open_screen, wait_for
from stillroom.themes import THEMES
from stillroom.tui import settings
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_pick_a_theme_from_the_palette_and_it_is_remembered(project_with_run):
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        assert {t.name for t in THEMES} <= set(app.available_themes)
        assert app.theme == "stillroom-dark"
        await open_screen(pilot, app, "4", "TrainScreen")
        await open_screen(pilot, app, "ctrl+p", "CommandPalette")
        await pilot.press(*"theme")
        await pilot.pause(1.0)
        await pilot.press("enter")          # "Theme: change the current theme" opens the theme list
        await pilot.pause(1.0)
        await pilot.press(*"stillroom-contrast")
        await pilot.pause(1.0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme == "stillroom-contrast")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TrainScreen")
    assert settings.theme() == "stillroom-contrast"
    again = make_app()
    async with again.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert again.theme == "stillroom-contrast"


@pytest.mark.parametrize("theme", [t.name for t in THEMES] + ["nord"])     # ours, and one of Textual's
async def test_model_screens_under_any_theme(project_with_run, theme):
    from textual.color import Color
    from textual.widgets import DataTable
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        app.theme = theme
        palette = app.get_theme(theme)
        for key, name in (("4", "TrainScreen"), ("5", "CompareScreen"), ("6", "ChatScreen")):
            await pilot.press(key)
            await wait_for(pilot, lambda: type(app.screen).__name__ == name)
            await pilot.pause(0.1)
            assert app.screen.styles.background == Color.parse(palette.background), name
            if name == "CompareScreen":
                # right/wrong marks take the theme's own colours, else its success/error colours
                table = app.screen.query_one("#cmp-table", DataTable)
                teacher = [table.get_row_at(i)[3] for i in range(2)]      # example 0 wrong, 1 right
                assert teacher[0].plain.startswith("✗") and teacher[1].plain.startswith("✓")
                wrong = palette.variables.get("mark-wrong") or palette.error
                right = palette.variables.get("mark-right") or palette.success
                assert Color.parse(str(teacher[0].style)) == Color.parse(wrong)
                assert Color.parse(str(teacher[1].style)) == Color.parse(right)
        await pilot.press("escape", "5", "enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "AnswersDialog")
        await pilot.press("escape", "4", "e")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ExportDialog")
        await open_screen(pilot, app, "escape", "TrainScreen")
