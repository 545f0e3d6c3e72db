"""Train screen driven by Pilot: start a run and watch loss points arrive, stop (a checkpoint is saved),
resume to the end; the settings are checked before anything starts."""
import json

import pytest
from textual.widgets import DataTable, Input

from modelscreens import TEACHER
from workbench import open_screen, wait_for
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]


HOLD = 3   # the training child reports this step, then waits for the stop (core.job_kinds' test seam)


async def test_train_stop_and_resume(project, monkeypatch):
    from stillroom.core.job_kinds import HOLD_AT_STEP
    monkeypatch.setenv(HOLD_AT_STEP, str(HOLD))
    steps = 30
    project.config.training.max_steps = steps
    project.save_config()
    app = make_app(project.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        await open_screen(pilot, app, "4", "TrainScreen")
        screen = app.screen
        from stillroom.tui.widgets.loss_chart import LossChart
        chart = screen.query_one(LossChart)
        # a bad setting is a dialog, not a traceback, and nothing starts
        screen.query_one("#learning_rate", Input).value = "-1"
        await open_screen(pilot, app, "s", "ErrorDialog")
        await pilot.press("escape")
        assert not screen.running
        screen.query_one("#learning_rate", Input).value = "0.001"
        await pilot.press("s")
        assert screen.running
        await wait_for(pilot, lambda: screen.last is not None and screen.last.step == HOLD, timeout=120)
        assert [s for s, _ in chart.train] == list(range(1, HOLD + 1))
        # the runs list follows the live step, not only the checkpoints
        from textual.coordinate import Coordinate
        runs = screen.query_one("#runs", DataTable)
        cell = runs.get_cell_at(Coordinate(runs.get_row_index(screen.run_id), 2))
        assert cell == f"{screen.last.step}/{steps}"
        # the interface answers keys while torch trains in the other process (how fast is a benchmark's
        # business, not a test's: these machines are noisy)
        await pilot.press("t")
        await pilot.pause()
        assert "step" in str(screen.query_one("#train-numbers").render())
        assert ["objective", "sft"] in [line.split() for line in
                                        str(screen.query_one("#train-numbers").render()).splitlines()]
        await pilot.press("escape")
        # quitting while a run is in progress asks first
        await open_screen(pilot, app, "ctrl+q", "ConfirmDialog")
        assert "training run is in progress" in str(app.screen.query_one("Static").render())
        await open_screen(pilot, app, "n", "TrainScreen")
        assert screen.running
        await pilot.press("x")
        await wait_for(pilot, lambda: not screen.running, timeout=120)
        assert screen.state == "stopped"
        run_id = screen.run_id
        state = json.loads((project.runs_dir / run_id / "state.json").read_text())
        assert state["status"] == "stopped"
        assert state["step"] == HOLD
        assert (project.runs_dir / run_id / "checkpoints" / f"checkpoint-{HOLD}").is_dir()
        from stillroom.core.project import Project
        assert Project.open(project.root).config.training.learning_rate == 0.001   # the settings were saved
        table = screen.query_one("#runs", DataTable)
        assert table.row_count == 1
        monkeypatch.delenv(HOLD_AT_STEP)          # the resumed run goes through to the end
        await pilot.press("r")
        assert screen.running
        await wait_for(pilot, lambda: not screen.running, timeout=150)
        assert screen.state == "finished", screen.status
        state = json.loads((project.runs_dir / run_id / "state.json").read_text())
        assert state["status"] == "finished" and state["step"] == steps
        assert (project.runs_dir / run_id / "adapter" / "adapter_config.json").exists()
        assert max(s for s, _ in chart.train) == steps
        assert min(s for s, _ in chart.train) == 1           # the resumed run shows its earlier points
        assert chart.eval                                      # validation points too
