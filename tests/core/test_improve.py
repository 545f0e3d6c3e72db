"""The improve loop (core.improve) with the fake teacher and the tiny student: mistakes grouped by confusion
pair or similarity, probes that never hold test rows, targeted rows that follow the confusions and carry
their round and group, --review stopping before the retrain, the round report, cancel and a killed job
resuming at the step it was in."""
import inspect
import json
import shutil
import threading
import time
from collections import Counter

import pytest

from clitools import run_cli
from fakes import FakeTeacher
from stillroom.core import events, records
from stillroom.core.improve import improve, round_reports
from stillroom.core.mistakes import UNPARSEABLE, allocate, group_mistakes
from stillroom.core.project import Project
from stillroom.core.targeting import ProbeGenerator, TargetedGenerator
from stillroom.core.tasks import kind_named

LABELS = ["billing", "shipping", "technical", "account"]


def demo_project(root, student=None) -> Project:
    project = Project.create(root, demo=True)
    config = project.config
    if student:
        config.student.model = str(student)
    for key, value in dict(logging_steps=1, eval_steps=50, save_steps=50, batch_size=8, lora_rank=4,
                           lora_alpha=8, max_steps=2, max_length=256, validation_fraction=0.0).items():
        setattr(config.training, key, value)
    config.evaluation.max_tokens, config.evaluation.max_examples, config.evaluation.baselines = 4, 6, []
    config.improve.probe, config.improve.rows = 8, 6
    project.save_config(config)
    return Project.open(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny):
    """The demo with the tiny student and one finished two-step run (copied by each test that changes it)."""
    from stillroom.core.train import train
    project = demo_project(tmp_path_factory.mktemp("improve") / "trained", tiny)
    train(project)
    return project.root


@pytest.fixture
def project(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "p")
    return Project.open(tmp_path / "p")


def teacher():
    return FakeTeacher(labels=LABELS)


def probe_row(text, label):
    return {"id": text[:12], "status": "kept", "messages": [{"role": "user", "content": text},
                                                             {"role": "assistant", "content": label}]}


# ---------------------------------------------------------------- mistakes

def test_classification_mistakes_group_by_confusion_pair_largest_first():
    kind = kind_named("classification")(tuple(LABELS))
    rows = [probe_row(f"ticket {i}", label) for i, label in
            enumerate(["billing", "billing", "billing", "shipping", "account", "technical"])]
    answers = ["shipping", "Shipping.", "billing", "billing", "I am not sure", "technical"]
    groups = group_mistakes(kind, rows, answers, headline="accuracy", below=0.5)
    assert [(g.key, g.size) for g in groups] == [("billing->shipping", 2), (f"account->{UNPARSEABLE}", 1),
                                                 ("shipping->billing", 1)]
    assert (groups[0].teacher, groups[0].student) == ("billing", "shipping")
    assert [records.user_text(r) for r in groups[0].rows] == ["ticket 0", "ticket 1"]
    summary = groups[0].summary()
    assert summary["size"] == 2 and summary["examples"][0] == {"input": "ticket 0", "teacher": "billing",
                                                               "student": "shipping"}
    # new rows are shared by the groups' sizes, every row placed
    assert allocate(groups, 8) == {"billing->shipping": 4, f"account->{UNPARSEABLE}": 2, "shipping->billing": 2}
    assert sum(allocate(groups, 7).values()) == 7
    assert allocate([], 8) == {}


def test_free_text_mistakes_group_by_similarity():
    kind = kind_named("qa")()
    rows = [probe_row("how do I reset my password on the app", "tap forgot password"),
            probe_row("the train to paris leaves when", "at nine"),
            probe_row("how do I reset my password on the website", "use the reset link"),
            probe_row("what is the capital of france", "paris")]
    answers = ["no idea", "nine o'clock train", "no idea", "paris"]
    groups = group_mistakes(kind, rows, answers, headline="token_f1", below=0.5)
    assert [(g.key, [records.user_text(r) for r in g.rows]) for g in groups] == [
        ("similar-1", ["how do I reset my password on the app", "how do I reset my password on the website"]),
        ("similar-2", ["the train to paris leaves when"])]


# ---------------------------------------------------------------- generation

class RecordingTeacher(FakeTeacher):
    def __init__(self, labels, copy_every=0, copies=()):
        super().__init__(labels=labels)
        self.prompts = []
        self.copy_every, self.copies, self.writes = copy_every, list(copies), 0

    def complete(self, prompt, params, on_token=None, cancel=None):
        self.prompts.append(prompt)
        return super().complete(prompt, params, on_token=on_token, cancel=cancel)

    def _new_text(self, label, seed):
        self.writes += 1
        if self.copy_every and self.writes % self.copy_every == 0:
            return self.copies[(self.writes // self.copy_every) % len(self.copies)]
        return super()._new_text(label, seed)


def test_targeted_rows_follow_the_confusions_and_carry_round_and_group(tmp_path):
    project = demo_project(tmp_path / "p")
    kind = kind_named("classification")(tuple(LABELS))
    rows = [probe_row(f"probe ticket number {i} about my refund", "billing") for i in range(3)] + \
           [probe_row("probe ticket about a password reset link", "account")]
    groups = group_mistakes(kind, rows, ["shipping", "shipping", "shipping", "technical"], headline="accuracy",
                            below=0.5)
    plan = {"billing->shipping": 4, "account->technical": 2}
    fake = RecordingTeacher(LABELS)
    result = TargetedGenerator(project, fake, round_no=3, chain="run-a", groups=groups, plan=plan,
                               base_labels={}, avoid=rows).run(6)
    assert result.kept == 6
    kept = project.kept_rows()
    assert Counter(records.answer_text(r) for r in kept) == {"billing": 4, "account": 2}
    assert {(records.answer_text(r), json.dumps(r["meta"]["improve"], sort_keys=True)) for r in kept} == {
        ("billing", json.dumps({"chain": "run-a", "group": "billing->shipping", "round": 3}, sort_keys=True)),
        ("account", json.dumps({"chain": "run-a", "group": "account->technical", "round": 3}, sort_keys=True))}
    # the disagreeing inputs are the teacher's few-shot examples
    writes = [p for p in fake.prompts if p.rstrip().endswith("Ticket:")]
    assert writes and all("probe ticket" in p for p in writes)


def test_probe_never_holds_test_rows_or_training_rows(tmp_path):
    project = demo_project(tmp_path / "p")
    tests = [records.user_text(r) for r in project.tests()]
    training = records.make_row("my parcel never arrived and tracking shows nothing", "shipping")
    fake = RecordingTeacher(LABELS, copy_every=2, copies=tests[:3] + [records.user_text(training)])
    path = tmp_path / "probe.jsonl"
    before = project.test_path.read_bytes()
    result = ProbeGenerator(project, fake, path=path, seed=7, avoid=[training]).run(6)
    assert result.kept == 6
    probe = records.read_jsonl(path, generated=True)
    kept = {records.user_text(r) for r in probe if r["status"] == "kept"}
    assert not kept & (set(tests) | {records.user_text(training)})
    assert {r["reason"] for r in probe if r["status"] == "rejected"} >= {"test-overlap", "exact-dup"}
    assert not project.synthetic_path.exists()         # the probe is not training data
    assert project.test_path.read_bytes() == before


# ---------------------------------------------------------------- whole rounds

@pytest.mark.slow          # trains the tiny student
def test_review_stops_before_the_retrain_then_the_round_reports(project, monkeypatch):
    from stillroom.core.project import Project as ProjectClass
    readers = set()
    tests = ProjectClass.tests

    def recorded(self):
        caller = inspect.stack()[1]
        readers.add((caller.frame.f_globals["__name__"], caller.function))
        return tests(self)
    monkeypatch.setattr(ProjectClass, "tests", recorded)

    project.config.improve.retrain = "continue"
    project.save_config()
    runs_before = [p.name for p in project.run_dirs()]
    seen = []
    result = improve(project, review=True, teacher=teacher(), on_event=seen.append)
    assert result.review_round == 1 and result.review_filter == "round:1" and not result.rounds
    assert [p.name for p in project.run_dirs()] == runs_before          # nothing trained yet
    chain = project.run_dirs()[0] / "improve"
    state = json.loads((chain / "round-1" / "state.json").read_text())
    assert state["step"] == "retrain" and state["awaiting_review"]
    [found] = [e for e in seen if isinstance(e, events.MistakesFound)]
    assert found.probe == 8 and found.disagreements == sum(g["size"] for g in found.groups) > 0
    assert [e.step for e in seen if isinstance(e, events.ImproveStep)] == ["baseline", "probe", "answer", "target"]

    # the user prunes one targeted row in Review (filtered by round), then the loop goes on
    from stillroom.core.review import ReviewSet
    review = ReviewSet.load(project)
    shown = review.filter("round:1 status:kept")
    assert len(shown) == state["rows"] == sum(state["plan"].values())
    review.prune([shown[0]])
    review.save()
    result = improve(project, teacher=teacher(), on_event=seen.append)
    engine_readers = set(readers)
    [report] = result.rounds
    assert report == round_reports(chain)[0]
    assert report["rows_added"] == report["rows_planned"] - 1
    assert report["from_run"] == runs_before[0] and report["run"] not in runs_before
    # improve.retrain = "continue": the new run trained the starting run's adapter further
    config = json.loads((project.runs_dir / report["run"] / "config.json").read_text())
    assert config["start_adapter"] == str(project.runs_dir / runs_before[0] / "adapter")
    assert report["retrain"] == "continue"
    assert report["probe"]["size"] == 8 and report["probe"]["disagreements_before"] == found.disagreements
    assert report["probe"]["disagreements_after"] is not None
    low, high = report["probe"]["disagree_before_ci"]
    assert low <= report["probe"]["disagree_before"] <= high
    for key in ("test_before", "test_after"):
        assert {"metric", "tuned", "tuned_ci", "gap_closed", "teacher", "base"} <= set(report[key])
    assert report["groups"] == found.groups[:5]
    assert [e.report for e in seen if isinstance(e, events.RoundReport)] == [report]

    # the retrained run saw no test row and no probe row; only the evaluation and de-duplication read tests
    run_rows = {records.user_text(r) for r in records.read_jsonl(project.runs_dir / report["run"] / "data.jsonl")}
    probe = {records.user_text(r) for r in records.read_jsonl(chain / "round-1" / "probe.jsonl", generated=True)}
    assert not run_rows & {records.user_text(r) for r in project.tests()}
    assert not run_rows & probe
    assert {module for module, _ in engine_readers} <= {"stillroom.core.evaluate", "stillroom.core.generate"}
    assert {fn for module, fn in engine_readers if module == "stillroom.core.generate"} == {"_index"}

    from stillroom.tui.commands.improve import report_text
    text = report_text(report)
    assert f"rows added        {report['rows_added']}" in text and "probe disagreement" in text
    assert "gap closed" in text or report["test_after"]["gap_closed"]["value"] is None


@pytest.mark.slow          # trains the tiny student
def test_cancel_during_the_probe_then_resume_at_the_probe(project):
    cancel = threading.Event()
    accepted = []

    def on_event(event):
        if isinstance(event, events.ExampleAccepted):
            accepted.append(event)
            if len(accepted) == 3:
                cancel.set()
    result = improve(project, teacher=teacher(), on_event=on_event, cancel=cancel)
    assert result.cancelled and not result.rounds
    chain = project.run_dirs()[0] / "improve"
    assert json.loads((chain / "round-1" / "state.json").read_text())["step"] == "probe"
    steps = []
    result = improve(project, review=True, teacher=teacher(),
                     on_event=lambda e: steps.append(e.step) if isinstance(e, events.ImproveStep) else None)
    assert steps == ["probe", "answer", "target"] and result.review_round == 1
    probe = records.read_jsonl(chain / "round-1" / "probe.jsonl", generated=True)
    assert sum(r["status"] == "kept" for r in probe) == 8
    assert [r["id"] for r in probe] == [records.synthetic_id(i) for i in range(len(probe))]


@pytest.mark.slow          # trains the tiny student
def test_a_killed_improve_job_resumes_at_the_step_it_was_in(project, monkeypatch):
    from stillroom.core.job_kinds import HOLD_IMPROVE, improve_job
    monkeypatch.setenv(HOLD_IMPROVE, "target:2")
    job = improve_job(project.root, review=True, teacher_factory="fakes:fake_teacher")
    seen = []
    worker = threading.Thread(target=lambda: _run_quietly(job, seen.append), daemon=True)
    worker.start()
    deadline = time.monotonic() + 400           # a generous bound for a loaded machine, not a speed check
    while sum(isinstance(e, events.ExampleAccepted) for e in _after_step(seen, "target")) < 2:
        assert time.monotonic() < deadline and worker.is_alive(), "the job never reached its held step"
        time.sleep(0.05)
    job.kill()                                   # SIGKILL: no chance to save anything on the way out
    worker.join(30)
    chain = project.run_dirs()[0] / "improve"
    state = json.loads((chain / "round-1" / "state.json").read_text())
    assert state["step"] == "target"
    probe_bytes = (chain / "round-1" / "probe.jsonl").read_bytes()
    assert len([r for r in project.kept_rows() if "improve" in r["meta"]]) == 2

    monkeypatch.delenv(HOLD_IMPROVE)
    steps = []
    result = improve(project, review=True, teacher=teacher(),
                     on_event=lambda e: steps.append(e.step) if isinstance(e, events.ImproveStep) else None)
    assert steps == ["target"] and result.review_round == 1             # resumed where it was killed
    assert (chain / "round-1" / "probe.jsonl").read_bytes() == probe_bytes
    targeted = [r for r in project.kept_rows() if "improve" in r["meta"]]
    assert len(targeted) == sum(state["plan"].values())                  # exactly the plan, nothing twice
    ids = [r["id"] for r in project.synthetic()]
    assert len(ids) == len(set(ids))


def _run_quietly(job, on_event):
    try:
        job.run(on_event)
    except Exception:  # noqa: BLE001 - the test kills it
        pass


def _after_step(seen, step):
    marks = [i for i, e in enumerate(list(seen)) if isinstance(e, events.ImproveStep) and e.step == step]
    return list(seen)[marks[-1]:] if marks else []


def test_cli_needs_a_finished_run(tmp_path):
    project = demo_project(tmp_path / "p")
    result = run_cli("improve", project.root, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"stillroom: error: {project.runs_dir}: no finished training run to improve")


def test_round_report_text_shows_every_field():
    from stillroom.tui.commands.improve import report_text
    gap = {"value": 0.5, "ci_low": 0.25, "ci_high": 0.75}
    report = {"round": 2, "run": "run-b", "retrain": "fresh", "rows_added": 11, "rows_planned": 12,
              "review_filter": "round:2",
              "probe": {"size": 40, "disagree_before": 0.25, "disagree_before_ci": [0.14, 0.4],
                        "disagree_after": 0.1, "disagree_after_ci": [0.04, 0.23]},
              "test_before": {"metric": "accuracy", "tuned": 0.7, "tuned_ci": [0.6, 0.8], "gap_closed": gap},
              "test_after": {"metric": "accuracy", "tuned": 0.75, "tuned_ci": [0.66, 0.84],
                             "gap_closed": {"value": 0.6, "ci_low": None}},
              "groups": [{"key": "negative->positive", "size": 7}, {"key": "positive->negative", "size": 3}]}
    assert report_text(report).splitlines() == [
        "round 2 → run run-b (fresh retrain)",
        "  rows added        11 (of 12 planned; Review filter 'round:2')",
        "  probe disagreement 25% [14%, 40%] → 10% [4%, 23%] of 40",
        "  test accuracy     0.700 [0.600, 0.800], gap closed 50% [25%, 75%] → 0.750 [0.660, 0.840], gap closed 60%",
        "  largest groups    negative->positive 7, positive->negative 3"]


@pytest.mark.slow          # trains the tiny student
def test_a_student_that_agrees_everywhere_ends_the_round_without_a_retrain(project, monkeypatch):
    import stillroom.core.improve as improve_module
    monkeypatch.setattr(improve_module, "student_answers",
                        lambda project, run_id, rows, **_: [records.answer_text(r) for r in rows])
    runs_before = [p.name for p in project.run_dirs()]
    [report] = improve(project, teacher=teacher()).rounds
    assert [p.name for p in project.run_dirs()] == runs_before
    assert report["run"] == report["from_run"] == runs_before[0]
    assert report["rows_added"] == 0 and report["probe"]["disagreements_before"] == 0 and report["groups"] == []
