"""The teacher's and the base student's answers are kept between evaluations: a second evaluation of the
same rows with the same models and settings asks only the tuned student; anything they depend on
changing, or --fresh, asks again."""
import json
import os

import pytest

from stillroom.core.answer_cache import files_identity
from stillroom.core.evaluate import evaluate

from fakes import label_teacher_for
from tiny import demo_with_adapter

RUN = "20250101-000000"


def teacher(project, identity=("oracle", 1)):
    return label_teacher_for(project, None if identity is None else {"teacher": list(identity)})


@pytest.fixture
def project(tmp_path):
    project = demo_with_adapter(tmp_path / "proj", RUN, batch_size=4, max_tokens=6, bootstrap=50)
    (project.runs_dir / RUN / "state.json").write_text(json.dumps({"status": "finished", "step": 2, "max_steps": 2}))
    config = project.config
    config.evaluation.baselines = ["few-shot", "scored"]
    project.save_config(config)
    return project


def answers(result):
    return {key: [r["outputs"][key]["text"] for r in result.records] for key in result.metrics["models"]}


def test_a_second_evaluation_reuses_the_teacher_and_base_answers(project, capsys):
    from stillroom.tui.commands.eval import print_result
    first_teacher = teacher(project)
    first = evaluate(project, teacher=first_teacher, limit=4)
    assert first_teacher.calls == 4 and first.metrics["reused_answers"] == []
    kept = sorted(p.name.split("-")[0] for p in (project.runs_dir / "_answers").glob("*.jsonl"))
    assert kept == ["base", "few_shot", "scored", "teacher"]
    assert [p.name for p in project.run_dirs()] == [RUN]           # the kept answers are not a run

    second_teacher, seen = teacher(project), []
    second = evaluate(project, teacher=second_teacher, limit=4, on_event=seen.append)
    assert second_teacher.calls == 0
    assert second.metrics["reused_answers"] == ["base", "few_shot", "scored", "teacher"]
    assert answers(second) == answers(first)
    for key in ("teacher", "base", "few_shot", "scored", "tuned"):
        assert second.metrics["models"][key]["accuracy"] == first.metrics["models"][key]["accuracy"]
        assert second.metrics["models"][key]["mode"] == first.metrics["models"][key]["mode"]
    assert "reused from an earlier evaluation" in (second.eval_dir / "report.md").read_text()
    assert any("reusing the answers" in getattr(e, "message", "") for e in seen)
    print_result(second)
    assert "--fresh" in " ".join(capsys.readouterr().out.split())

    # fewer rows: every one of them was answered before
    fewer = evaluate(project, teacher=teacher(project), limit=2)
    assert fewer.metrics["reused_answers"] == ["base", "few_shot", "scored", "teacher"]

    fresh_teacher = teacher(project)
    fresh = evaluate(project, teacher=fresh_teacher, limit=4, fresh=True)
    assert fresh_teacher.calls == 4 and fresh.metrics["reused_answers"] == []


def test_what_the_answers_depend_on_asks_again(project):
    evaluate(project, teacher=teacher(project), limit=4)
    # a different teacher: only its own column is asked again
    other = teacher(project, identity=("another teacher", 1))
    assert evaluate(project, teacher=other, limit=4).metrics["reused_answers"] == ["base", "few_shot", "scored"]
    assert other.calls == 4
    # a teacher that does not say what it is (a test's fake, a model from outside) is always asked
    unknown = teacher(project, identity=None)
    assert evaluate(project, teacher=unknown, limit=4).metrics["reused_answers"] == ["base", "few_shot", "scored"]
    assert unknown.calls == 4
    # more rows than were ever answered
    assert evaluate(project, teacher=teacher(project), limit=6).metrics["reused_answers"] == []
    # a setting the prompts read
    config = project.config
    config.task.system_prompt += " Be brief."
    project.save_config(config)
    assert evaluate(project, teacher=teacher(project), limit=4).metrics["reused_answers"] == []
    # switched off in the settings
    config.evaluation.reuse_answers = False
    project.save_config(config)
    assert evaluate(project, teacher=teacher(project), limit=4).metrics["reused_answers"] == []


def test_a_torn_line_is_only_an_answer_to_ask_again(project):
    evaluate(project, teacher=teacher(project), limit=4)
    path = next((project.runs_dir / "_answers").glob("teacher-*.jsonl"))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1] + [lines[-1][:20]]) + "\n")
    again = teacher(project)
    result = evaluate(project, teacher=again, limit=4)
    assert "teacher" not in result.metrics["reused_answers"] and again.calls == 4
    assert len(path.read_text().splitlines()) == 4                  # asked again and kept whole


def test_weights_are_known_by_size_and_modification_time(tmp_path):
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"1234")
    before = files_identity(weights)
    os.utime(weights, ns=(1, 1))
    assert files_identity(weights) != before
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"abc")
    (folder / "config.json").write_text("{}")
    assert [f[0].rsplit("/", 1)[-1] for f in files_identity(folder)] == ["config.json", "model.safetensors"]
    assert files_identity(None) == []
