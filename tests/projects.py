"""Small projects the tests start from: a two-label classification project with seeds, and the demo
project with the tiny Llama as its student and quick training settings."""
from stillroom.core import records
from stillroom.core.project import Project


def make_project(tmp_path, seeds=6):
    project = Project.create(tmp_path / "proj", "classification")
    project.config.task.labels = ["billing", "shipping"]
    project.config.task.input_name, project.config.task.output_name = "Ticket", "Team"
    project.config.evaluation.test_fraction = 0.0
    project.save_config()
    rows = []
    for i in range(seeds):
        label = ["billing", "shipping"][i % 2]
        rows.append(records.make_row(f"seed number {i} is a question about {label} things", label))
    project.save_seeds(rows)
    return Project.open(project.root)


def tiny_project(tmp_path, tiny, **training):
    project = Project.create(tmp_path / "proj", demo=True)
    project.config.student.model = str(tiny)
    settings = dict(logging_steps=1, eval_steps=4, save_steps=4, batch_size=4, lora_rank=4, lora_alpha=8,
                    learning_rate=1e-3, max_length=384, validation_fraction=0.15)
    settings.update(training)
    for key, value in settings.items():
        setattr(project.config.training, key, value)
    project.save_config()
    return Project.open(project.root)
