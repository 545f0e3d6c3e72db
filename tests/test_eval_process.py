"""The evaluation child process: a user error comes back as the same StillroomError class with the same
one-line message as in-process evaluation; the process modules stay headless and light."""

import pytest

from stillroom.core.errors import StillroomError
from stillroom.core.eval_process import EvalProcess
from stillroom.core.evaluate import evaluate
from stillroom.core.project import Project


def test_eval_child_reports_a_user_error_as_in_process(tmp_path):
    project = Project.create(tmp_path / "p", "classification")
    with pytest.raises(StillroomError) as direct:
        evaluate(project, "no-such-run")
    process = EvalProcess(project.root, "no-such-run")
    with pytest.raises(StillroomError) as child:
        process.evaluate()
    assert type(child.value) is type(direct.value)
    assert child.value.one_line() == direct.value.one_line()
    assert process.proc.returncode == 1
    assert "Traceback" in process.log_path.read_text()


def test_eval_child_arguments():
    assert EvalProcess("/p", "r1", limit=3).arguments() == ["/p", "--run", "r1", "--limit", "3"]
    assert EvalProcess("/p").arguments() == ["/p"]


def test_process_modules_stay_headless_and_light():
    from clitools import heavy_modules_after_importing
    assert heavy_modules_after_importing("stillroom.core.eval_process", "stillroom.core.train_process") == "none"
