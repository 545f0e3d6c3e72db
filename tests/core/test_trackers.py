"""training.report_to: opt-in experiment trackers through Trainer's own integrations."""
import importlib.util

import pytest

from stillroom.core import trackers
from stillroom.core.config import parse_config, render_toml, ProjectConfig
from stillroom.core.errors import ConfigError
from stillroom.core.project import Project
from stillroom.core.runs import read_metrics
from stillroom.core.train import train


def tiny_project(tmp_path, tiny, **training):
    project = Project.create(tmp_path / "proj", demo=True)
    project.config.student.model = str(tiny)
    settings = dict(max_steps=3, logging_steps=1, eval_steps=100, save_steps=100, batch_size=4, lora_rank=4,
                    lora_alpha=8, max_length=384, validation_fraction=0.0)
    settings.update(training)
    for key, value in settings.items():
        setattr(project.config.training, key, value)
    project.save_config()
    return Project.open(project.root)


def test_nothing_is_reported_unless_named_and_names_are_checked():
    assert ProjectConfig().training.report_to == []
    assert trackers.report_to([]) == "none"
    assert trackers.report_to(["tensorboard", "mlflow"]) == ["tensorboard", "mlflow"]
    cfg = ProjectConfig()
    cfg.task.labels = ["yes", "no"]
    cfg.training.report_to = ["tensorboard"]
    assert parse_config(render_toml(cfg)).training.report_to == ["tensorboard"]
    text = render_toml(cfg).replace('report_to = ["tensorboard"]', 'report_to = ["neptune"]')
    with pytest.raises(ConfigError, match=r"training.report_to may hold tensorboard, wandb, mlflow, trackio, "
                                          r"got 'neptune'"):
        parse_config(text, "stillroom.toml")


def test_a_missing_tracker_package_fails_before_training_starts(tmp_path, tiny, monkeypatch):
    project = tiny_project(tmp_path, tiny, report_to=["wandb"])
    monkeypatch.setattr(trackers, "installed", lambda name: name != "wandb")
    loaded = []
    monkeypatch.setattr("stillroom.core.train._load_student", lambda *a, **k: loaded.append(1))
    with pytest.raises(ConfigError) as err:
        train(project)
    line = err.value.one_line()
    assert "training.report_to names wandb, but the wandb package is not installed" in line
    assert "pip install wandb" in line and "stillroom[tracking]" in line and "\n" not in line
    assert loaded == [] and not list(project.runs_dir.glob("*"))


def test_the_selection_reaches_training_arguments(tmp_path, tiny, monkeypatch):
    project = tiny_project(tmp_path, tiny, report_to=["mlflow", "trackio"])
    monkeypatch.setattr(trackers, "installed", lambda name: True)
    seen = {}
    import transformers

    class Stop(Exception):
        pass

    def capture(self, model=None, args=None, **kwargs):
        seen["report_to"], seen["run_name"] = args.report_to, args.run_name
        raise Stop
    monkeypatch.setattr(transformers.Trainer, "__init__", capture)
    with pytest.raises(Stop):
        train(project)
    run_dir = next(project.runs_dir.iterdir())
    assert seen == {"report_to": ["mlflow", "trackio"], "run_name": run_dir.name}


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX")
                    is None, reason="needs tensorboard (pip install 'stillroom[tracking]')")
def test_tensorboard_writes_event_files_beside_the_metrics(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny, report_to=["tensorboard"])
    result = train(project)
    events_dir = trackers.tensorboard_dir(result.run_dir)
    files = list(events_dir.glob("events.out.tfevents.*"))
    assert files and files[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    scalars = EventAccumulator(str(events_dir)).Reload().Tags()["scalars"]
    assert "train/loss" in scalars
    assert [m["step"] for m in read_metrics(result.run_dir) if "loss" in m][-1] == 3   # metrics.jsonl too
