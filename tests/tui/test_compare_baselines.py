"""The Compare screen shows the baselines and the figures beside the headline."""
import json

import pytest

from modelscreens import RUN_ID, TEACHER
from workbench import open_screen, wait_for
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def compare_headline(project, **figures) -> str:
    """The Compare screen's headline for the run's evaluation with `figures` written into it."""
    path = project.runs_dir / RUN_ID / "eval" / "metrics.json"
    metrics = json.loads(path.read_text())
    models = figures.pop("models", {})
    metrics["models"].update(models)
    metrics.update(figures)
    path.write_text(json.dumps(metrics))
    app = make_app(project.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        await open_screen(pilot, app, "5", "CompareScreen")
        return str(app.screen.query_one("#cmp-headline").render())


async def test_compare_headline_shows_the_baselines(project_with_run):
    headline = await compare_headline(
        project_with_run,
        models={key: {"accuracy": score, "name": "base", "mode": "chat"}
                for key, score in (("few_shot", 0.417), ("scored", 0.583), ("seed_only", 0.5))},
        gap_closed_vs_prompted={"value": 0.61, "ci_low": 0.22, "ci_high": 0.93, "baseline": "scored"},
        rows_added={"value": 0.167, "ci_low": -0.083, "ci_high": 0.417})
    for text in ("gap closed", "base few-shot 0.417", "base scored 0.583", "seed-only student 0.500",
                 "vs best prompted 61% [22%, 93%]", "tuned − seed-only +0.167 [-0.083, +0.417]"):
        assert text in headline
    assert "86%" in headline                      # the headline itself stays


async def test_a_prompted_baseline_above_the_teacher_shows_the_difference_not_a_gap(project_with_run):
    headline = await compare_headline(
        project_with_run,
        models={"scored": {"accuracy": 0.79, "name": "base", "mode": "completion"}},
        gap_closed_vs_prompted={"value": None, "ci_low": None, "ci_high": None, "baseline": "scored",
                                "note": "the base scored scores above the teacher, so there is no gap to close"},
        tuned_minus_prompted={"value": -0.24, "ci_low": -0.35, "ci_high": -0.13, "baseline": "scored"})
    assert "tuned − base scored -0.240 [-0.350, -0.130]" in headline
    assert "vs best prompted" not in headline
    assert "the base scored does better than the tuned student (-0.240 [-0.350, -0.130]): prompting the base " \
           "student beats this run" in " ".join(headline.split())
