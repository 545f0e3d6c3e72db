"""K candidates in flight: same rows as sequential, append-only, resumable after SIGKILL."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

from fakes import FakeTeacher
from stillroom.core import events, records
from stillroom.core.generate import generate
from stillroom.core.project import Project
from projects import make_project


class SeededTeacher(FakeTeacher):
    """A FakeTeacher whose texts depend only on the sampling seed (so on the row index), not on call
    order; with `dup_every`, every k-th index repeats an earlier text; thread-safe enough for K workers."""

    def __init__(self, dup_every=0, **kw):
        super().__init__(**kw)
        self.dup_every = dup_every
        self.lock = threading.Lock()
        self.peak = 0
        self.active = 0

    def _new_text(self, label, seed):
        rng = random.Random(seed)
        n = seed
        if self.dup_every and seed % self.dup_every == 0:
            rng, n = random.Random(seed - 3), seed - 3
        body = " ".join(rng.choice(self.words) for _ in range(6))
        return f"Ticket {n} about {label}: {body} {rng.randint(0, 10**9)}"

    def complete(self, prompt, params, on_token=None, cancel=None):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return super().complete(prompt, params, on_token, cancel)
        finally:
            with self.lock:
                self.active -= 1


def comparable(rows):
    out = []
    for row in rows:
        row = json.loads(json.dumps(row))
        row["meta"].pop("time", None)
        row["meta"].pop("dup_of", None)
        out.append(row)
    return out


def run_rows(folder, k, task_type="classification", target=30):
    project = make_project(folder)
    project.config.task.type = task_type
    project.config.teacher.max_in_flight = k
    project.save_config()
    teacher = SeededTeacher(delay=0.005, dup_every=5)
    seen = []
    result = generate(Project.open(project.root), target, teacher=teacher, on_event=seen.append)
    assert result.kept == target
    rows = Project.open(project.root).synthetic()
    assert [r["id"] for r in rows] == [f"syn-{i:06d}" for i in range(len(rows))]
    kept = [r for r in rows if r["status"] == "kept"]
    assert len({records.user_text(r) for r in kept}) == len(kept)
    assert any(r["reason"] in ("exact-dup", "near-dup") for r in rows)
    if k > 1:
        assert teacher.peak > 1, "candidates really overlapped"
    accepted = [e.row["id"] for e in seen if isinstance(e, events.ExampleAccepted)]
    assert accepted == sorted(accepted)
    return comparable(rows)


def test_k_in_flight_gives_the_rows_of_a_sequential_run(tmp_path):
    # Without labels to balance, which index is started never depends on K: identical rows.
    assert run_rows(tmp_path / "k1", 1, "qa") == run_rows(tmp_path / "k4", 4, "qa")


def test_k_in_flight_is_repeatable_given_a_seed(tmp_path):
    # Classification balances labels over committed and in-flight rows, so rows depend on K, but
    # for a given K and seed they are always the same, whatever the timing.
    first = run_rows(tmp_path / "a", 4)
    assert run_rows(tmp_path / "b", 4) == first
    from collections import Counter
    kept = Counter(r["messages"][-1]["content"] for r in first if r["status"] == "kept")
    assert set(kept) == {"billing", "shipping"} and abs(kept["billing"] - kept["shipping"]) <= 2


class SlowFirstTeacher(SeededTeacher):
    """Row 0's input takes a second; every other request is quick. Records the order requests end in."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.ended = []

    def complete(self, prompt, params, on_token=None, cancel=None):
        slow = params.seed == 0
        if slow:
            time.sleep(1.0)
        try:
            return super().complete(prompt, params, on_token, cancel)
        finally:
            with self.lock:
                self.ended.append("slow" if slow else "quick")


class ReluctantTeacher(SeededTeacher):
    """Agrees that a text written for "shipping" is shipping only one time in four (as the demo's small
    teacher rarely agrees on "account"); every other label always."""

    def complete(self, prompt, params, on_token=None, cancel=None):
        answer = super().complete(prompt, params, on_token, cancel)
        if answer.text.strip() == "shipping" and params.seed % 4:
            return answer.__class__(" billing", "stop", answer.prompt_tokens, 1, answer.seconds)
        return answer


def kept_labels(folder, k, target=12):
    project = make_project(folder)
    project.config.teacher.max_in_flight = k
    project.config.generation.max_attempts_factor = 20
    project.save_config()
    result = generate(Project.open(project.root), target, teacher=ReluctantTeacher(delay=0.002))
    assert result.kept == target
    rows = Project.open(project.root).synthetic()
    over = [r for r in rows if r.get("reason") == "over-share"]
    assert all(records.answer_text(r) for r in over) and (k > 1 or not over)   # answer kept for Review
    return sorted(records.answer_text(r) for r in rows if r["status"] == "kept")


def test_a_label_the_teacher_rarely_agrees_on_stays_balanced_with_k_in_flight(tmp_path):
    # A candidate in flight counts as its label's kept rate, not a whole row, so the lagging label keeps
    # being asked for, as one at a time does; the last candidates do not overshoot the other label.
    # (Counted whole and without the share, "shipping" ended 3 of 12 at K = 4 and 2 at K = 8.)
    for k in (1, 4, 8):
        assert kept_labels(tmp_path / f"k{k}", k) == ["billing"] * 6 + ["shipping"] * 6


def test_a_slow_candidate_does_not_hold_back_the_others(tmp_path):
    # K=2: while row 0 is slow, rows 1, 2 and 3 (two requests each) finish and wait to be committed
    # behind it; the teacher is not left with one request in flight.
    project = make_project(tmp_path)
    project.config.task.type = "qa"
    project.config.teacher.max_in_flight = 2
    project.save_config()
    teacher = SlowFirstTeacher(delay=0.005)
    assert generate(Project.open(project.root), 8, teacher=teacher).kept == 8
    assert teacher.ended.index("slow") >= 6
    rows = Project.open(project.root).synthetic()
    assert [r["id"] for r in rows] == [f"syn-{i:06d}" for i in range(len(rows))]


def test_streamed_text_names_its_candidate(tmp_path):
    # K candidates interleave: each streamed text says which one it belongs to and how many tokens.
    project = make_project(tmp_path)
    project.config.task.type = "qa"
    project.config.teacher.max_in_flight = 4
    project.save_config()
    seen = []
    generate(Project.open(project.root), 8, teacher=SeededTeacher(delay=0.005), on_event=seen.append)
    streamed = [e for e in seen if isinstance(e, events.TokenStreamed)]
    rows = Project.open(project.root).synthetic()
    assert {e.index for e in streamed} >= {int(r["id"][4:]) for r in rows}
    assert all(e.tokens > 0 for e in streamed)
    for row in rows:
        first = next(e for e in streamed if e.index == int(row["id"][4:]) and e.purpose == "input")
        assert records.user_text(row) in first.text


def test_cancel_with_k_in_flight_leaves_no_gap_and_resumes(tmp_path):
    project = make_project(tmp_path)
    project.config.teacher.max_in_flight = 4
    project.save_config()
    cancel = threading.Event()

    def on_event(event):
        if isinstance(event, events.ExampleAccepted) and event.row["id"] >= "syn-000005":
            cancel.set()
    result = generate(Project.open(project.root), 40, teacher=SeededTeacher(delay=0.01), on_event=on_event,
                      cancel=cancel)
    assert result.cancelled and result.kept < 40
    rows = Project.open(project.root).synthetic()
    assert [r["id"] for r in rows] == [f"syn-{i:06d}" for i in range(len(rows))]
    assert generate(Project.open(project.root), 40, teacher=SeededTeacher()).kept == 40
    rows = Project.open(project.root).synthetic()
    assert [r["id"] for r in rows] == [f"syn-{i:06d}" for i in range(len(rows))]


KILL_SCRIPT = """
import sys
sys.path[:0] = {paths!r}
from test_generate_concurrent import SeededTeacher
from stillroom.core.generate import generate
from stillroom.core.project import Project
generate(Project.open({root!r}), {target}, teacher=SeededTeacher(delay=0.05, dup_every=7))
"""


def test_sigkill_during_concurrent_generation_then_rerun_reaches_exactly_n(tmp_path):
    project = make_project(tmp_path)
    project.config.teacher.max_in_flight = 4
    project.save_config()
    target = 200
    here = os.path.dirname(os.path.abspath(__file__))
    script = KILL_SCRIPT.format(paths=[here, os.path.dirname(here)], root=str(project.root), target=target)
    rng = random.Random(5)

    def lines():
        path = project.synthetic_path
        return path.read_bytes().count(b"\n") if path.exists() else 0
    for _ in range(6):
        start = lines()
        proc = subprocess.Popen([sys.executable, "-c", script])
        deadline = time.monotonic() + 60
        # kill once the run is visibly under way, a random moment later (mid-row writes included)
        while lines() < start + 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = sum(1 for r in Project.open(project.root).synthetic() if r["status"] == "kept")
    assert 0 < before < target, before
    done = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert done.returncode == 0
    rows = [json.loads(line) for line in project.synthetic_path.read_text().splitlines()]
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == target
    assert [r["id"] for r in rows] == [f"syn-{i:06d}" for i in range(len(rows))]
    assert len({records.user_text(r) for r in kept}) == len(kept)


def test_teacher_time_counts_overlapping_requests_once(tmp_path):
    project = make_project(tmp_path)
    project.config.teacher.max_in_flight = 4
    project.save_config()
    teacher = SeededTeacher(delay=0.05)
    result = generate(Project.open(project.root), 12, teacher=teacher)
    assert teacher.peak > 1
    # Summed per request, 4 overlapping requests would add up to about 4x the wall time; the teacher
    # was busy at least as long as its calls take with 4 at a time.
    assert teacher.calls * 0.05 / 4 * 0.9 <= result.teacher_seconds <= result.elapsed
