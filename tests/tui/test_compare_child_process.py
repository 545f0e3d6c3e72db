"""The Compare screen evaluating in a child process, as it does for a user (no injected teacher): the real
bundled SmolLM2 teacher in llama.cpp and the tiny student answer a few held-out rows; keys are handled
while the child works; stopping it leaves the run's earlier results untouched."""
import pytest
from textual.widgets import DataTable

from modelscreens import RUN_ID
from workbench import open_screen, wait_for
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def real_teacher_project(project_with_run):
    config = project_with_run.config
    config.teacher.model = "bundled:smollm2-135m-instruct"
    config.teacher.n_threads = 1
    config.evaluation.max_examples = 4
    project_with_run.save_config(config)
    return project_with_run


async def open_compare(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: app.workbench.project is not None)
    await open_screen(pilot, app, "5", "CompareScreen")
    screen = app.screen
    assert screen.run_id == RUN_ID and screen.result is not None     # the earlier (fixed) evaluation
    return screen


async def test_evaluation_runs_in_a_child_process_and_keys_are_handled_meanwhile(real_teacher_project):
    project = real_teacher_project
    app = make_app(project.root)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compare(pilot)
        table = screen.query_one("#cmp-table", DataTable)
        old = screen.result
        assert table.row_count == 12
        await pilot.press("e")
        assert screen.running and screen.job is not None
        # the child has started its work (it reports what it loads) ...
        await wait_for(pilot, lambda: screen.progress_text != "starting…", timeout=120)
        # ... and a filter key is handled while it works: the evaluation has not finished yet
        await pilot.press("w")
        assert screen.filter == "student-wrong" and 0 < table.row_count < 12
        assert screen.running and screen.result is old
        await pilot.press("a")
        await wait_for(pilot, lambda: not screen.running, timeout=200)
        assert screen.job.proc.returncode == 0
        assert screen.result is not old, screen.progress_text
        assert screen.progress_text.startswith("evaluated in")
        assert table.row_count == 4                       # the child's results are on the screen
        metrics = screen.result.metrics
        assert metrics["n"] == 4 and "created" in metrics  # written by evaluate(), not the fixture
        assert metrics["models"]["teacher"]["name"] != "teacher"
        assert "gap closed" in str(screen.query_one("#cmp-headline").render())
        assert (project.runs_dir / ".eval-process.log").exists()


async def test_stopping_the_evaluation_keeps_the_earlier_results(real_teacher_project):
    project = real_teacher_project
    project.config.evaluation.max_examples = 0            # every test row: long enough to stop midway
    project.save_config()
    eval_dir = project.runs_dir / RUN_ID / "eval"
    before = {p.name: p.read_bytes() for p in eval_dir.iterdir()}
    app = make_app(project.root)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compare(pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.progress_text != "starting…", timeout=120)
        await pilot.press("x")
        await wait_for(pilot, lambda: not screen.running, timeout=120)
        assert screen.progress_text == "stopped"
        assert type(app.screen).__name__ == "CompareScreen"        # no error dialog
        assert screen.job.proc.returncode == 1                 # the child ended with Cancelled
        assert screen.query_one("#cmp-table", DataTable).row_count == 12
    assert {p.name: p.read_bytes() for p in eval_dir.iterdir()} == before   # nothing written, no temp files
