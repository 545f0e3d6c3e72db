"""Compare's run picker and headline: the picker's prompt line is not a run, and the headline follows the
theme like the table does."""
import pytest
from rich.style import Style
from textual.widgets import Select

from modelscreens import RUN_ID, add_run, TEACHER
from workbench import open_screen, wait_for
from stillroom import themes
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def open_compare(pilot, app):
    await wait_for(pilot, lambda: app.workbench.project is not None)
    await open_screen(pilot, app, "5", "CompareScreen")
    await pilot.pause(0.1)
    return app.screen


async def test_the_prompt_line_is_not_a_run(project_with_run, tiny):
    add_run(project_with_run, tiny, "20260102-090000-lora", evaluated=False)
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compare(pilot, app)
        select = screen.query_one("#cmp-run", Select)
        assert screen.run_id == RUN_ID
        # with runs to pick from, the prompt does not claim there are none
        assert select.prompt == "choose a run"
        select.clear()                        # what picking the prompt line in the open list does
        await pilot.pause(0.2)
        assert screen.run_id == RUN_ID
        assert select.value == RUN_ID
        headline = str(screen.query_one("#cmp-headline").render())
        assert "gap closed" in headline and "NULL" not in headline


def gap_colour(screen):
    text = screen.query_one("#cmp-headline").render()
    start = text.plain.index("gap closed ") + len("gap closed ")
    for span in text.spans:
        if span.start <= start < span.end:
            return Style.parse(str(span.style)).color.get_truecolor()
    raise AssertionError("the gap has no style")


async def test_the_headline_takes_the_new_themes_colours(project_with_run):
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compare(pilot, app)
        for theme in ("stillroom-light", "stillroom-contrast", "stillroom-dark"):
            app.theme = theme
            await pilot.pause(0.2)
            assert gap_colour(screen) == Style.parse(themes.color(app, "mark-right")).color.get_truecolor(), theme
