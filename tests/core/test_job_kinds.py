"""The model jobs (core.job_kinds): a user error in a child comes back as the same StillroomError with the
same one-line message as in process; events cross the boundary whole; the modules stay light."""
import json

import pytest

from stillroom.core import events as ev
from stillroom.core.errors import DataError, StillroomError
from stillroom.core.evaluate import evaluate
from stillroom.core.job_kinds import evaluation_job, generation_job, generation_result, training_job
from stillroom.core.jobs import event_from_json, event_to_json
from stillroom.core.project import Project


def test_evaluation_job_reports_a_user_error_as_in_process(tmp_path):
    project = Project.create(tmp_path / "p", "classification")
    with pytest.raises(StillroomError) as direct:
        evaluate(project, "no-such-run")
    job = evaluation_job(project.root, "no-such-run")
    with pytest.raises(StillroomError) as child:
        job.run()
    assert type(child.value) is type(direct.value)
    assert child.value.one_line() == direct.value.one_line()
    assert job.proc.returncode == 1
    assert "Traceback" in job.log_path.read_text()


def test_training_job_reports_a_user_error_as_such(tmp_path):
    project = Project.create(tmp_path / "empty", "classification")
    project.config.training.include_seeds = False
    project.save_config()
    job = training_job(project.root)
    with pytest.raises(DataError, match="no training rows"):
        job.run()
    assert job.proc.returncode == 1
    assert "Traceback" in job.log_path.read_text()


def test_generation_session_keeps_its_teacher_between_requests(tmp_path):
    from projects import make_project
    project = make_project(tmp_path)
    with generation_job(project.root, teacher_factory="fakes:fake_teacher") as job:
        statuses = []
        first = generation_result(job.call({"target": 4}, statuses.append))
        second = generation_result(job.call({"target": 6}, statuses.append))
    assert (first.kept, second.kept) == (4, 6)
    loads = [e.message for e in statuses if isinstance(e, ev.Status) and e.message.startswith("loading")]
    assert len(loads) == 1                      # loaded once, for the first request
    assert sum(r["status"] == "kept" for r in Project.open(project.root).synthetic()) == 6


def test_events_cross_the_process_boundary():
    for event in (ev.TrainStep(3, 10, 0.3, 1.5, 2e-4, 100.0, 4.0, 9.0), ev.EvalStep(5, 1.2),
                  ev.CheckpointSaved(5, "/x/checkpoint-5"), ev.ExportFinished("gguf", ("a", "b"), {"gguf": 1.0}),
                  ev.ModelReady("teacher", "gemma")):
        assert event_from_json(json.loads(json.dumps(event_to_json(event)))) == event
    assert event_from_json({"event": "NoSuchEvent"}) is None
    assert event_from_json({"event": "Event"}) == ev.Event()
