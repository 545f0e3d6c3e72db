"""The improve loop from the Train screen: i opens it, s runs it in its own process (the fake teacher, the
tiny student), the mistake groups appear, and after the round's targeting the dialog asks; answering
"review first" opens Review filtered to the round's new rows."""
import pytest
from textual.widgets import Input, Static

from workbench import open_screen, wait_for
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]


async def test_improve_asks_before_the_retrain_and_opens_review_on_its_rows(project_with_run):
    project = project_with_run
    project.config.improve.rows = 4
    project.save_config()
    app = make_app(project.root, teacher_factory="fakes:fake_teacher")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        await open_screen(pilot, app, "4", "TrainScreen")
        await open_screen(pilot, app, "i", "ImproveDialog")
        dialog = app.screen
        assert "starts a loop from run" in str(dialog.query_one("#improve-next", Static).render())
        dialog.query_one("#improve-probe", Input).value = "4"
        await pilot.press("s")
        assert dialog.improving
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog", timeout=180)
        assert "disagrees with the teacher on" in dialog.lines[0]
        assert "targeted rows" in str(app.screen.query_one("Static").render())
        await open_screen(pilot, app, "y", "ReviewScreen")
        review = app.screen
        await wait_for(pilot, lambda: review.rs is not None and review.filter_text == "round:1")
        await wait_for(pilot, lambda: len(review.rs.filter("round:1")) == 4)
        assert review.query_one("#filter", Input).value == "round:1"
