import json
import threading

import pytest

from stillroom.core import records
from stillroom.core.backends.base import Completion
from stillroom.core.errors import Cancelled, StillroomError
from stillroom.core.evaluate import evaluate, read_eval, render_report, shot_pool
from stillroom.core.events import EvalFinished, EvalProgress
from stillroom.core.project import Project

from clitools import run_cli
from tiny import demo_with_adapter

LABELS = ["billing", "shipping", "technical", "account"]


class OracleTeacher:
    """A base-model teacher that answers the reference label for all but every `wrong_every`-th input,
    and records every prompt it was given."""

    name = "oracle"
    supports_chat = False
    is_base = True

    def __init__(self, answers: dict, wrong_every: int = 0):
        self.answers = answers
        self.wrong_every = wrong_every
        self.prompts = []

    def complete(self, prompt, params, on_token=None, cancel=None):
        if prompt.endswith("Score:"):
            return Completion(" 4", "stop", 50, 1, 0.01)
        self.prompts.append(prompt)
        last = prompt.rsplit("\n\n", 1)[-1]
        text = last.split("\n", 1)[0].split(":", 1)[1].strip()
        label = self.answers.get(text, "billing")
        if self.wrong_every and len(self.prompts) % self.wrong_every == 0:
            label = "account" if label != "account" else "billing"
        return Completion(" " + label, "stop", 50, 1, 0.01)

    def chat(self, messages, params, on_token=None, cancel=None):
        raise NotImplementedError

    def close(self):
        pass


@pytest.fixture
def project(tmp_path):
    return demo_with_adapter(tmp_path / "proj", "20250101-000000", batch_size=4, max_tokens=6, bootstrap=200)


def oracle_for(project, wrong_every=0):
    answers = {" ".join(records.user_text(r).split()): records.answer_text(r)
               for r in project.tests() + project.all_seeds()}
    return OracleTeacher(answers, wrong_every)


def test_evaluate_writes_predictions_metrics_and_report(project):
    teacher = oracle_for(project, wrong_every=5)
    seen = []
    result = evaluate(project, on_event=seen.append, teacher=teacher, limit=10)
    eval_dir = project.runs_dir / "20250101-000000" / "eval"
    assert result.eval_dir == eval_dir
    rows = [json.loads(l) for l in (eval_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    tests = project.tests()[:10]
    for row, test in zip(rows, tests):
        assert row["input"] == records.user_text(test)
        assert row["reference"] == records.answer_text(test)
        # seed-only needs the run's step count, which this hand-made run does not record
        assert set(row["outputs"]) == {"teacher", "base", "tuned", "few_shot", "scored"}
        for out in row["outputs"].values():
            assert {"text", "score", "scores", "seconds", "tokens", "finish_reason"} <= set(out)
    saved = json.loads((eval_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result.metrics))
    assert saved["headline"] == "accuracy" and saved["n"] == 10
    assert saved["models"]["teacher"]["accuracy"] == pytest.approx(0.8)
    gap = saved["gap_closed"]
    assert set(gap) >= {"value", "ci_low", "ci_high", "resamples"}
    report = (eval_dir / "report.md").read_text()
    assert "| teacher |" in report and "| tuned student |" in report and "gap closed" in report
    assert any(isinstance(e, EvalFinished) for e in seen)
    progress = [e for e in seen if isinstance(e, EvalProgress)]
    assert {e.model for e in progress} == {"teacher", "base", "tuned", "few_shot", "scored"}
    assert all(e.done <= e.total == 10 for e in progress)
    # read back for compare / the TUI
    back = read_eval(project)
    assert back.metrics == saved and len(back.records) == 10


def test_teacher_is_asked_as_in_generation_and_never_sees_test_rows_as_shots(project):
    teacher = oracle_for(project)
    evaluate(project, teacher=teacher, limit=6)
    test_texts = [" ".join(records.user_text(r).split()) for r in project.tests()]
    assert len(teacher.prompts) == 6
    for prompt, own in zip(teacher.prompts, test_texts):
        blocks = prompt.split("\n\n")
        assert blocks[-1] == f"Ticket: {own}\nTeam:"            # the few-shot completion format
        shots = blocks[1:-1]
        assert len(shots) == project.config.generation.few_shot
        for shot in shots:
            assert not any(t in shot for t in test_texts)


def test_judge_mode_grades_every_answer(project):
    result = evaluate(project, teacher=oracle_for(project), limit=3, judge=True)
    for key in ("teacher", "base", "tuned"):
        assert result.metrics["models"][key]["judge"] == pytest.approx(0.75)
        assert result.metrics["models"][key]["judge_unparsed"] == 0
    out = result.records[0]["outputs"]["tuned"]
    assert out["judge_reply"] == "4" and out["scores"]["judge"] == 0.75
    assert "judge" in render_report(result.metrics, result.records)


def test_shot_pool_excludes_a_seed_that_is_also_a_test_row(project):
    tests = project.tests()
    seeds = project.all_seeds() + [tests[0]]
    project.save_seeds(seeds)
    pool = shot_pool(project, tests)
    assert records.user_text(tests[0]) not in {records.user_text(r) for r in pool}


def test_base_and_tuned_differ_when_the_adapter_changes_the_model(project):
    result = evaluate(project, teacher=oracle_for(project), limit=4)
    outs = [(r["outputs"]["base"]["text"], r["outputs"]["tuned"]["text"]) for r in result.records]
    assert any(b != t for b, t in outs)
    assert result.metrics["models"]["base"]["name"] != result.metrics["models"]["tuned"]["name"]


def test_cancel_stops_without_writing(project):
    cancel = threading.Event()

    def on_event(event):
        if isinstance(event, EvalProgress) and event.model == "tuned" and event.done:
            cancel.set()

    with pytest.raises(Cancelled):
        evaluate(project, teacher=oracle_for(project), limit=8, on_event=on_event, cancel=cancel)
    assert not (project.runs_dir / "20250101-000000" / "eval" / "metrics.json").exists()


def test_clear_errors_without_runs_or_tests(tmp_path):
    project = Project.create(tmp_path / "empty", demo=True)
    with pytest.raises(StillroomError, match="no training runs"):
        evaluate(project, teacher=OracleTeacher({}))
    run = project.runs_dir / "r1"
    run.mkdir(parents=True)
    with pytest.raises(StillroomError, match="no adapter/ or model/"):
        evaluate(project, teacher=OracleTeacher({}))


def test_report_renders_worst_examples_and_verdict():
    result = {"run": "r", "task": "t", "task_type": "classification", "headline": "accuracy", "n": 2,
              "test_source": "test.jsonl", "judge": False,
              "gap_closed": {"value": 0.5, "ci_low": 0.1, "ci_high": 0.9, "note": ""},
              "models": {k: {"accuracy": a, "macro_f1": a, "unparseable": 0, "name": k, "mode": "chat",
                             "seconds_per_answer": 0.1, "confusion": {"a": {"a": 1}, "b": {"a": 1}}}
                         for k, a in (("teacher", 1.0), ("base", 0.0), ("tuned", 0.5))}}
    rows = [{"index": i, "input": f"input {i} `x`", "reference": "b",
             "outputs": {k: {"text": "a", "score": s} for k, s in
                         (("teacher", 1.0), ("base", 0.0), ("tuned", float(i)))}} for i in range(2)]
    text = render_report(result, rows)
    assert "gap closed: 50% (95% CI 10% to 90%)" in text
    assert "below the 80% bar" in text
    assert "#0: input 0" in text and "#1:" not in text


@pytest.mark.slow
def test_demo_end_to_end_with_bundled_models_cli(tmp_path):
    """The demo project, the bundled Gemma teacher and SmolLM2 student, a two-step LoRA run, then
    `stillroom eval` and `stillroom compare` through the real CLI on a small test subset."""
    from stillroom.core.train import train
    project = Project.create(tmp_path / "demo", demo=True)
    config = project.config
    config.training.batch_size = 4
    config.training.validation_fraction = 0.0
    config.evaluation.max_tokens = 8
    config.evaluation.bootstrap = 300
    project.save_config(config)
    result = train(project, overrides={"max_steps": 2})
    assert not result.cancelled
    done = run_cli("eval", project.root, "--limit", "6", timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    for word in ("teacher", "base student", "tuned student", "gap closed", "accuracy"):
        assert word in done.stdout
    metrics = json.loads((project.runs_dir / result.run_id / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 6 and metrics["models"]["teacher"]["name"] == "gemma-3-270m"
    assert metrics["models"]["teacher"]["mode"].startswith("completion")
    assert metrics["models"]["tuned"]["mode"] == "chat"
    for key in ("teacher", "base", "tuned"):
        assert 0.0 <= metrics["models"][key]["accuracy"] <= 1.0
    gap = metrics["gap_closed"]
    assert "value" in gap and "ci_low" in gap
    # A second evaluation, in a new process, asks only the tuned student (the seed-only one is cached too).
    again = run_cli("eval", project.root, "--limit", "6", timeout=900, env={"COLUMNS": "400"})
    assert again.returncode == 0, again.stderr[-2000:]
    second = json.loads((project.runs_dir / result.run_id / "eval" / "metrics.json").read_text())
    assert second["reused_answers"] == ["base", "few_shot", "scored", "teacher"]
    assert "reused from an earlier evaluation" in again.stdout
    for key in ("teacher", "base", "few_shot", "scored", "seed_only", "tuned"):
        assert second["models"][key]["accuracy"] == metrics["models"][key]["accuracy"]
    compared = run_cli("compare", project.root, "--limit", "3", env={"COLUMNS": "400"})
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert records.user_text(project.tests()[0])[:30] in compared.stdout


def test_compare_cli_shows_rows_side_by_side_and_eval_errors_cleanly(project):
    evaluate(project, teacher=oracle_for(project), limit=3)
    done = run_cli("compare", project.root, "--run", "20250101-000000", env={"COLUMNS": "400"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert records.user_text(project.tests()[0])[:30] in done.stdout
    assert "✓" in done.stdout                       # the oracle teacher is right
    empty = Project.create(project.root.parent / "fresh", demo=True)
    for command in ("eval", "compare", "export"):
        args = ["--format", "gguf"] if command == "export" else []
        failed = run_cli(command, empty.root, *args)
        assert failed.returncode == 2 and "no training runs" in failed.stderr, failed.stderr[-2000:]
        assert "Traceback" not in failed.stderr
