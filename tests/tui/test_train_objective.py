"""The Train screen says which training objective a run learned with (from its config.json)."""
import json

import pytest

from modelscreens import RUN_ID, TEACHER
from workbench import open_screen, wait_for
from stillroom.core.runs import list_runs
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio]


def numbers(screen) -> str:
    return str(screen.query_one("#train-numbers").render())


async def test_a_past_runs_objective_is_shown(project_with_run):
    config_path = project_with_run.runs_dir / RUN_ID / "config.json"
    config = json.loads(config_path.read_text())
    config["config"] = {"training": {"objective": "soft-labels"}}
    config_path.write_text(json.dumps(config))
    assert [run.objective for run in list_runs(project_with_run)] == ["soft-labels"]
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        await open_screen(pilot, app, "4", "TrainScreen")
        await wait_for(pilot, lambda: "objective" in numbers(app.screen))
        line = next(l for l in numbers(app.screen).splitlines() if l.startswith("objective"))
        assert line.split() == ["objective", "soft-labels"]


def test_a_run_from_before_the_setting_learned_sft(project_with_run):
    assert [run.objective for run in list_runs(project_with_run)] == ["sft"]
