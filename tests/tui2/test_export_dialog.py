"""Export from the runs list: pick a format by keyboard, watch it finish, read the resulting paths."""
import pytest
from textual.widgets import RadioSet

from modelscreens import RUN_ID, TEACHER, wait_for
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_export_adapter_from_the_runs_list(project_with_run):
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        await pilot.press("4")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TrainScreen")
        await pilot.press("e")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ExportDialog")
        dialog = app.screen
        assert dialog.format == "gguf"
        radios = dialog.query_one(RadioSet)
        assert radios.has_focus
        await pilot.press("up", "up", "enter")
        await wait_for(pilot, lambda: dialog.format == "adapter")
        assert "adapter folder" in str(dialog.query_one("#export-help").render())
        await pilot.press("s")
        await wait_for(pilot, lambda: dialog.result is not None, timeout=60)
        target = project_with_run.exports_dir / RUN_ID / "adapter"
        assert (target / "adapter_config.json").exists()
        assert str(target) in str(dialog.query_one("#export-result").render())
        assert "done in" in str(dialog.query_one("#export-status").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TrainScreen")
