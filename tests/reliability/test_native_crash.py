"""A native crash in a model job (here: a teacher that kills its own process with SIGSEGV, as a fault in
llama.cpp would) ends that job with a clear error; the CLI and the workbench stay up, and generation
resumes with no lost and no duplicated rows."""
from collections import Counter

import pytest

from stillroom.core import job_kinds
from stillroom.core.project import Project
from stillroom.tui.app import make_app
from stillroom.tui.cli import main
from workbench import start_generation, wait_for


def assert_whole(rows_before, root, kept):
    rows = Project.open(root).synthetic()
    assert rows[:len(rows_before)] == rows_before                      # nothing written was lost
    assert len({r["id"] for r in rows}) == len(rows)                   # nothing was written twice
    assert Counter(r["status"] for r in rows)["kept"] == kept


def test_cli_generate_reports_a_teacher_crash_in_one_line_and_resumes(tmp_path, monkeypatch, capsys):
    project = Project.create(tmp_path / "demo", demo=True)
    make_job = job_kinds.generation_job
    monkeypatch.setattr(job_kinds, "generation_job",
                        lambda root, **kw: make_job(root, teacher_factory="fakes:crashing_teacher", **kw))
    assert main(["generate", str(project.root), "--count", "20"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1
    assert errors[0].startswith("stillroom: error: the teacher process crashed (SIGSEGV) (")
    assert 'teacher.cpu_repack = "off"' in errors[0] and ".teacher.log" in errors[0]
    before = Project.open(project.root).synthetic()
    assert 0 < sum(r["status"] == "kept" for r in before) < 20

    monkeypatch.setenv("STILLROOM_TEST_NO_CRASH", "1")
    assert main(["generate", str(project.root), "--count", "20"]) == 0
    assert_whole(before, project.root, 20)


@pytest.mark.anyio
async def test_workbench_survives_a_teacher_crash_and_generation_resumes(tmp_path, monkeypatch):
    project = Project.create(tmp_path / "demo", demo=True)
    app = make_app(project.root, teacher_factory="fakes:crashing_teacher")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_generation(pilot, app, 20)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ErrorDialog" and app.screen.query("#cause"), timeout=60)
        assert "the teacher process crashed (SIGSEGV)" in str(app.screen.query_one("#cause").render())
        assert "cpu_repack" in str(app.screen.query_one("#remedy").render())
        await pilot.press("escape")
        assert screen.state == "failed" and not app.workbench.generating and app.is_running
        await pilot.press("3")                                          # still usable
        await wait_for(pilot, lambda: app.current_mode == "review" and app.screen.rs is not None)
        before = Project.open(project.root).synthetic()
        assert 0 < sum(r["status"] == "kept" for r in before) < 20

        monkeypatch.setenv("STILLROOM_TEST_NO_CRASH", "1")              # the next teacher process is sound
        await pilot.press("2", "s")
        await wait_for(pilot, lambda: not app.workbench.generating and screen.state == "done", timeout=60)
        await pilot.press("ctrl+q")
    assert_whole(before, project.root, 20)
