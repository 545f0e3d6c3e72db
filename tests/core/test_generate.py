import json
import os
import subprocess
import sys
import threading
from collections import Counter

import pytest

from fakes import FakeTeacher
from stillroom.core import events, records
from stillroom.core.generate import Generator, generate
from stillroom.core.project import Project
from killing import KILL_SCRIPT, kill_mid_run
from projects import make_project


def test_generation_fills_to_target_balanced(tmp_path):
    project = make_project(tmp_path)
    seen = []
    result = generate(project, 8, teacher=FakeTeacher(disagree_every=5), on_event=seen.append)
    assert result.kept == 8
    rows = project.synthetic()
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == 8
    assert Counter(records.answer_text(r) for r in kept) == {"billing": 4, "shipping": 4}
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert rejected and all(r["reason"] == "label-disagree" for r in rejected)
    assert all(r["meta"]["teacher_label"] != r["meta"]["intended_label"] for r in rejected)
    assert len({r["id"] for r in rows}) == len(rows)
    meta = kept[0]["meta"]
    assert {"teacher", "prompt_hash", "seed_ids", "sampling", "time"} <= set(meta)
    kinds = {type(e).__name__ for e in seen}
    assert {"GenerationProgress", "ExampleAccepted", "ExampleRejected", "TokenStreamed",
            "GenerationFinished"} <= kinds
    # already complete: a rerun adds nothing
    assert generate(project, 8, teacher=FakeTeacher()).kept == 8
    assert len(project.synthetic()) == len(rows)


def test_duplicates_of_seeds_and_earlier_rows_rejected(tmp_path):
    project = make_project(tmp_path)

    class Repeater(FakeTeacher):
        def _new_text(self, label, seed):
            return "seed number 0 is a question about billing things"   # a seed, verbatim

    from stillroom.core.errors import StillroomError
    with pytest.raises(StillroomError, match=r"gave up after 20 candidates with 0/1 kept.*exact-dup 20"):
        generate(project, 1, teacher=Repeater())
    rows = project.synthetic()
    assert len(rows) == 20 and all(r["reason"] == "exact-dup" and r["meta"]["dup_of"].startswith("seed:") for r in rows)


def test_cancel_stops_cleanly_and_resumes(tmp_path):
    project = make_project(tmp_path)
    cancel = threading.Event()
    finished = []

    def on_event(event):
        if isinstance(event, events.ExampleAccepted) and event.row["id"] == "syn-000002":
            cancel.set()
        if isinstance(event, events.GenerationFinished):
            finished.append(event)

    result = generate(project, 10, teacher=FakeTeacher(), on_event=on_event, cancel=cancel)
    assert result.cancelled and finished[-1].cancelled
    assert 1 <= result.kept < 10
    result = generate(project, 10, teacher=FakeTeacher())
    assert result.kept == 10 and not result.cancelled
    rows = project.synthetic()
    assert len({r["id"] for r in rows}) == len(rows)


def test_too_few_seeds_is_a_clear_error(tmp_path):
    project = make_project(tmp_path, seeds=1)
    from stillroom.core.errors import StillroomError
    with pytest.raises(StillroomError, match="seeds.jsonl: 1 usable seed example"):
        generate(project, 3, teacher=FakeTeacher())


def test_sigkill_during_generation_then_rerun_reaches_exactly_n(tmp_path):
    import random
    project = make_project(tmp_path)
    target = 60
    script = KILL_SCRIPT.format(tests=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), root=str(project.root), target=target)
    landed = kill_mid_run(script, project.synthetic_path, random.Random(3), rounds=6, grow=3)
    assert landed >= 3
    done = subprocess.run([sys.executable, "-c", script], timeout=300)
    assert done.returncode == 0
    lines = project.synthetic_path.read_text().splitlines()
    rows = [json.loads(line) for line in lines]          # no torn line survives
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == target
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({records.user_text(r) for r in kept}) == len(kept)


class PromptRecorder(FakeTeacher):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.prompts = []

    def complete(self, prompt, params, on_token=None, cancel=None):
        self.prompts.append(prompt)
        return super().complete(prompt, params, on_token, cancel)


def _shot_rows(tmp_path, group):
    project = make_project(tmp_path / f"g{group}", seeds=12)
    project.config.task.type = "qa"
    project.config.generation.shot_group = group
    project.config.generation.few_shot = 4
    project.save_config()
    teacher = PromptRecorder()
    generate(Project.open(project.root), 16, teacher=teacher)
    rows = Project.open(project.root).synthetic()
    return rows, teacher.prompts


def test_a_shot_group_shares_all_but_the_last_shot_so_prompts_share_a_prefix(tmp_path):
    rows, prompts = _shot_rows(tmp_path, 8)
    prompts = [p for p in prompts if p.endswith("Ticket:")]
    shots = [r["meta"]["seed_ids"] for r in rows]
    assert all(len(s) == 4 for s in shots)
    first, second = shots[:8], shots[8:16]
    assert all(s[:-1] == first[0][:-1] for s in first)
    assert all(s[:-1] == second[0][:-1] for s in second)
    assert first[0][:-1] != second[0][:-1], "the sample rotates between groups"
    assert len({s[-1] for s in first}) > 1, "each candidate has its own last shot"
    assert all(s[-1] not in s[:-1] for s in shots)
    # The prompts of a group are the same text up to the last shot.
    shared = prompts[0][:prompts[0].rindex("\n\nTicket:", 0, len(prompts[0]) - len("\n\nTicket:"))]
    assert len(shared) > len(prompts[0]) // 2
    assert all(p.startswith(shared) for p in prompts[:8]) and not prompts[8].startswith(shared)


def test_answer_prompts_of_a_shot_group_show_the_same_balanced_examples(tmp_path):
    project = make_project(tmp_path, seeds=12)
    project.config.generation.few_shot = 4
    project.save_config()
    generator = Generator(Project.open(project.root), FakeTeacher())
    shots = [generator._answer_shots(g) for g in range(6)]
    assert all(Counter(records.answer_text(r) for r in s) == {"billing": 2, "shipping": 2} for s in shots)
    assert len({tuple(records.user_text(r) for r in s) for s in shots}) > 1, "rotated between groups"
    # The answer prompts of one group differ only in the input they ask about.
    _, prompts = _shot_rows(tmp_path, 8)
    answers = [p for p in prompts if p.endswith("Team:")]
    heads = [p.rsplit("\n\nTicket:", 1)[0] for p in answers]
    assert len(answers) >= 16
    assert len(set(heads[:8])) == 1 and len(set(heads[8:16])) == 1 and heads[0] != heads[8]


def test_shot_group_of_one_samples_fresh_shots_per_candidate(tmp_path):
    rows, _ = _shot_rows(tmp_path, 1)
    heads = [tuple(r["meta"]["seed_ids"][:-1]) for r in rows[:8]]
    assert len(set(heads)) > 4


def test_a_labels_candidates_share_its_shots_across_the_turns_of_the_labels(tmp_path):
    project = make_project(tmp_path, seeds=12)
    project.config.generation.few_shot = 4
    project.config.generation.shot_group = 4
    project.save_config()
    generate(Project.open(project.root), 16, teacher=FakeTeacher())
    rows = Project.open(project.root).synthetic()[:8]     # indices 0-7: one group per label
    by_label = {}
    for row in rows:
        by_label.setdefault(row["meta"]["intended_label"], []).append(row["meta"]["seed_ids"][:-1])
    assert set(by_label) == {"billing", "shipping"}
    assert all(len(heads) >= 3 and len({tuple(h) for h in heads}) == 1 for heads in by_label.values())
