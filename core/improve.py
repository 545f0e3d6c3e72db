"""The closed loop: find where the tuned student still disagrees with the teacher, generate rows aimed
at those mistakes, retrain, evaluate, and report what the round bought.

A chain of rounds lives under the run it started from; each round resumes at the step it was in:

    runs/<run>/improve/
      chain.json            the rounds asked for and when the chain started
      round-N/state.json    the step the round is in and what its earlier steps decided (atomic)
      round-N/probe.jsonl   the teacher's fresh inputs and answers (kept and rejected, as generated)
      round-N/answers.jsonl each kept probe input: the teacher's answer, the student's before and after
      round-N/report.json   the round report

Steps of a round (STEPS): the starting run is evaluated if it never was (baseline); the teacher writes
and answers a probe (probe); the starting student answers it and its disagreements are grouped
(answer); rows are generated around the groups into data/synthetic.jsonl (target; with `review` the
loop stops here so the rows can be pruned first); a new run is trained on every kept row, fresh or
continuing the starting adapter (improve.retrain) (retrain); the new student answers the probe again
(recheck); the new run is evaluated on the test rows by core.evaluate, as `stillroom eval` does
(evaluate). Only that evaluation reads test.jsonl; generation reads its inputs for de-duplication alone.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import records
from .backends.base import SamplingParams
from .errors import Cancelled, StillroomError
from .events import (EvalProgress, EventSink, ImproveStep, MistakesFound, RoundReport, Status, TrainStarted,
                     ignore)
from .fsio import atomic_write_jsonl, atomic_write_text
from .mistakes import Group, allocate, group_mistakes, headline_for, wilson
from .project import Project
from .runs import list_runs, read_json
from .tasks import task_kind

STEPS = ("baseline", "probe", "answer", "target", "retrain", "recheck", "evaluate", "done")
TOP_GROUPS = 5


@dataclass
class ImproveResult:
    chain_dir: str
    rounds: list = field(default_factory=list)       # the reports of the rounds finished by this call
    cancelled: bool = False
    review_round: int = 0                            # > 0: stopped after targeting this round for review
    review_filter: str = ""                          # the Review filter that shows that round's rows


# ---------------------------------------------------------------- chains and rounds on disk

def chain_dirs(project: Project) -> list[Path]:
    """Every improve chain of the project, oldest first."""
    return [d / "improve" for d in project.run_dirs() if (d / "improve" / "chain.json").exists()]


def _chain_done(chain: Path) -> bool:
    info = read_json(chain / "chain.json") or {}
    return all(_round_step(chain, n) == "done" for n in range(1, int(info.get("rounds", 1)) + 1))


def _round_step(chain: Path, n: int) -> str:
    return (read_json(chain / f"round-{n}" / "state.json") or {}).get("step", STEPS[0])


def unfinished_chain(project: Project) -> Optional[Path]:
    """The newest chain with a round not done, if any (the one a plain `improve` resumes)."""
    for chain in reversed(chain_dirs(project)):
        if not _chain_done(chain):
            return chain
    return None


def round_reports(chain: Path) -> list[dict]:
    """The reports of a chain's finished rounds, in order."""
    info = read_json(chain / "chain.json") or {}
    out = []
    for n in range(1, int(info.get("rounds", 0)) + 1):
        report = read_json(chain / f"round-{n}" / "report.json")
        if report:
            out.append(report)
    return out


def all_probe_paths(project: Project) -> list[Path]:
    return sorted(project.runs_dir.glob("*/improve/round-*/probe.jsonl")) if project.runs_dir.exists() else []


def _open_chain(project: Project, rounds: Optional[int], run: Optional[str], on_event: EventSink) -> Path:
    """The chain to run and its rounds. Without `run`: the unfinished chain (with `rounds`, it runs until
    that many more rounds are done, the interrupted one counted), else the chain whose last round made
    the newest finished run (extended by `rounds`, default 1), else a new chain from that run."""
    chain = unfinished_chain(project) if run is None else None
    if chain is not None:
        if rounds:
            _set_rounds(chain, _done_rounds(chain) + rounds)
        on_event(Status(f"resuming the improve loop started from run {chain.parent.name}"))
        return chain
    check_ready(project, run)
    finished = [r for r in list_runs(project) if r.status == "finished" and r.output_dir is not None]
    base = project.run_dir(run) if run is not None else finished[-1].path
    chain = next((c for c in chain_dirs(project) if _last_run(c) == base.name), None) or base / "improve"
    if (chain / "chain.json").exists():
        _set_rounds(chain, _done_rounds(chain) + (rounds or 1))
    else:
        chain.mkdir(parents=True, exist_ok=True)
        info = {"base_run": base.name, "rounds": rounds or 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(chain / "chain.json", json.dumps(info, indent=1) + "\n")
    return chain


def check_ready(project: Project, run: Optional[str] = None) -> None:
    """What can be checked before any model loads: a loop to resume or a finished run to start from."""
    if run is None and unfinished_chain(project) is not None:
        return
    finished = [r for r in list_runs(project) if r.status == "finished" and r.output_dir is not None]
    if run is not None:
        base = project.run_dir(run)
        if not any(r.path == base for r in finished):
            raise StillroomError(f"{base}: run {base.name} has not finished training; improve starts from a "
                                 f"finished run")
    elif not finished:
        raise StillroomError(f"{project.runs_dir}: no finished training run to improve",
                             f"train one first: stillroom train {project.root}")


def next_step(project: Project) -> str:
    """What a plain `improve` would do next, in a sentence (raises StillroomError when it cannot start)."""
    chain = unfinished_chain(project)
    if chain is None:
        check_ready(project)
        finished = [r for r in list_runs(project) if r.status == "finished" and r.output_dir is not None]
        extends = next((c for c in chain_dirs(project) if _last_run(c) == finished[-1].run_id), None)
        if extends is not None:
            return f"adds round {_done_rounds(extends) + 1} to the loop, from run {finished[-1].run_id}"
        return f"starts a loop from run {finished[-1].run_id}"
    n = _done_rounds(chain) + 1
    state = read_json(chain / f"round-{n}" / "state.json") or {}
    if state.get("awaiting_review"):
        return f"retrains round {n}: its targeted rows (Review filter round:{n}) are waiting"
    return f"resumes round {n} of the loop from run {chain.parent.name} at its {state.get('step', STEPS[0])} step"


def _set_rounds(chain: Path, rounds: int) -> None:
    info = read_json(chain / "chain.json") or {}
    info["rounds"] = rounds
    atomic_write_text(chain / "chain.json", json.dumps(info, indent=1) + "\n")


def _last_run(chain: Path) -> Optional[str]:
    """The run the chain's last finished round trained (None before any round is done)."""
    n = _done_rounds(chain)
    return (read_json(chain / f"round-{n}" / "state.json") or {}).get("run") if n else None


def _done_rounds(chain: Path) -> int:
    n = 0
    while _round_step(chain, n + 1) == "done":
        n += 1
    return n


# ---------------------------------------------------------------- the student on the probe

def student_answers(project: Project, run_id: str, rows: list[dict], *, on_event: EventSink = ignore,
                    cancel: Optional[threading.Event] = None, source: str = "probe") -> list[str]:
    """The tuned student of `run_id` answers the probe rows, asked as the evaluation asks it."""
    from .evaluate import clean_answer, load_students, run_weights, shot_pool, shots_for, student_messages
    from .prompts import Prompter
    cancel = cancel or threading.Event()
    ev, task = project.config.evaluation, project.config.task
    base, tuned = load_students(project, run_weights(project, run_id), on_event=on_event)
    params = SamplingParams(temperature=0.0, max_tokens=ev.max_tokens)
    pool = shot_pool(project, []) if not tuned.supports_chat else []
    out: list[str] = []
    try:
        on_event(EvalProgress(source, 0, len(rows)))
        for start in range(0, len(rows), ev.batch_size):
            if cancel.is_set():
                raise Cancelled("improve stopped")
            batch = rows[start:start + ev.batch_size]
            if tuned.supports_chat:
                answers = tuned.chat_batch([student_messages(r, task.system_prompt) for r in batch], params,
                                           cancel=cancel)
            else:
                prompter = Prompter(task, "completion")
                requests = [prompter.answer(shots_for(pool, project.config.generation.few_shot, ev.seed, start + i),
                                            records.user_text(r), task.system_prompt) for i, r in enumerate(batch)]
                answers = tuned.complete_batch([q.prompt for q in requests],
                                               SamplingParams(**{**params.__dict__, "stop": requests[0].stop}),
                                               cancel=cancel)
            if cancel.is_set():
                raise Cancelled("improve stopped")
            out += [clean_answer(a.text) for a in answers]
            on_event(EvalProgress(source, len(out), len(rows)))
    finally:
        tuned.close()
        base.close()
    return out


# ---------------------------------------------------------------- one round

class Round:
    """One round of a chain: its state file, and a method per step."""

    def __init__(self, project: Project, chain: Path, number: int, rounds: int, *, teacher, on_event: EventSink,
                 cancel: threading.Event, review: bool, probe: Optional[int]):
        self.project = project
        self.chain = chain
        self.n = number
        self.rounds = rounds
        self.dir = chain / f"round-{number}"
        self.teacher = teacher                 # a callable that loads the teacher once, when first needed
        self.on_event = on_event
        self.cancel = cancel
        self.review = review
        self.kind = task_kind(project.config.task)
        self.state = read_json(self.dir / "state.json") or {}
        if not self.state:
            self.state = {"round": number, "step": STEPS[0], "from_run": self._from_run(),
                          "probe_size": probe or project.config.improve.probe,
                          "rows": project.config.improve.rows, "retrain": project.config.improve.retrain,
                          # A seed of the probe's own, new for every probe ever written in the project.
                          "probe_seed": project.config.generation.seed * 1000 + 101 + len(all_probe_paths(project))}
            self._save()

    @property
    def probe_path(self) -> Path:
        return self.dir / "probe.jsonl"

    @property
    def answers_path(self) -> Path:
        return self.dir / "answers.jsonl"

    def _from_run(self) -> str:
        if self.n == 1:
            return self.chain.parent.name
        before = read_json(self.chain / f"round-{self.n - 1}" / "state.json") or {}
        return before.get("run") or before.get("from_run") or self.chain.parent.name

    def _save(self) -> None:
        self.state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(self.dir / "state.json", json.dumps(self.state, indent=1, ensure_ascii=False) + "\n")

    def _enter(self, step: str) -> None:
        self.state["step"] = step
        self._save()
        self.on_event(ImproveStep(self.n, step, self.rounds))

    def _check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("improve stopped")

    # ------------------------------------------------------------ the steps in order
    def run(self) -> Optional[dict]:
        """Run the round from the step it is in; its report, or None when it stopped for review."""
        for step in STEPS[STEPS.index(self.state["step"]):]:
            if step == "done":
                break
            self._enter(step)
            self._check()
            if getattr(self, f"_{step}")() == "review":
                return None
        self._enter("done")
        return read_json(self.dir / "report.json")

    def _baseline(self) -> None:
        """The starting run's own evaluation, so the round can say what it changed."""
        if not (self.project.run_dir(self.state["from_run"]) / "eval" / "metrics.json").exists():
            from .evaluate import evaluate
            evaluate(self.project, self.state["from_run"], on_event=self.on_event, cancel=self.cancel,
                     teacher=self.teacher())

    def _probe(self) -> None:
        from .targeting import ProbeGenerator, probe_rows
        others = [p for p in all_probe_paths(self.project) if p != self.probe_path]
        avoid = [r for r in self.project.synthetic() if r.get("status") in ("kept", "pruned")] + probe_rows(others)
        generator = ProbeGenerator(self.project, self.teacher(), path=self.probe_path,
                                   seed=self.state["probe_seed"], avoid=avoid, on_event=self.on_event,
                                   cancel=self.cancel)
        if generator.run(self.state["probe_size"]).cancelled:
            raise Cancelled("improve stopped")

    def _probe_rows(self) -> list[dict]:
        from .targeting import probe_rows
        return probe_rows([self.probe_path])

    def _answer(self) -> None:
        rows = self._probe_rows()
        answers = student_answers(self.project, self.state["from_run"], rows, on_event=self.on_event,
                                  cancel=self.cancel)
        atomic_write_jsonl(self.answers_path, [
            {"id": r["id"], "input": records.user_text(r), "teacher": records.answer_text(r), "before": a}
            for r, a in zip(rows, answers)])
        groups = self.groups()
        self.state["disagree_before"] = sum(g.size for g in groups)
        self.state["probe_answered"] = len(rows)
        self.state["groups"] = [g.summary() for g in groups]
        self._save()
        self.on_event(MistakesFound(self.n, len(rows), self.state["disagree_before"], self.state["groups"]))

    def groups(self, after: bool = False) -> list[Group]:
        """The disagreements of the starting student (or, `after`, the new one) on the probe, grouped."""
        answers = {a["id"]: a for a in records_of(self.answers_path)}
        rows = [r for r in self._probe_rows() if r["id"] in answers]
        key = "after" if after else "before"
        improve = self.project.config.improve
        return group_mistakes(self.kind, rows, [answers[r["id"]].get(key, "") for r in rows],
                              headline=headline_for(self.kind, self.project.config.evaluation.headline),
                              below=improve.disagree_below)

    def _target(self) -> Optional[str]:
        from collections import Counter

        from .targeting import TargetedGenerator, probe_rows
        groups = self.groups()
        if "plan" not in self.state:
            kept = self.project.kept_rows()
            self.state["kept_before"] = len(kept)
            self.state["base_labels"] = dict(Counter(records.answer_text(r) for r in kept))
            self.state["plan"] = allocate(groups, self.state["rows"])
            self._save()
        plan = self.state["plan"]
        if plan:
            generator = TargetedGenerator(self.project, self.teacher(), round_no=self.n, chain=self.chain.parent.name,
                                          groups=groups, plan=plan,
                                          base_labels=self.state["base_labels"],
                                          avoid=probe_rows(all_probe_paths(self.project)),
                                          on_event=self.on_event, cancel=self.cancel)
            if generator.run(self.state["kept_before"] + sum(plan.values())).cancelled:
                raise Cancelled("improve stopped")
        else:
            self.on_event(Status(f"round {self.n}: the student agrees with the teacher on the whole probe; "
                                 f"nothing to target"))
        if self.review:
            self.state["awaiting_review"] = True
            self.state["step"] = "retrain"
            self._save()
            return "review"
        return None

    def _retrain(self) -> None:
        from .evaluate import run_weights
        from .train import train
        self.state.pop("awaiting_review", None)
        if not self.state.get("plan"):
            self.state["run"] = self.state["from_run"]       # nothing was targeted: nothing to retrain
            self._save()
            return
        self._save()
        resume = self.state.get("train_run")
        if resume:
            status = next((r.status for r in list_runs(self.project) if r.run_id == resume), None)
            if status == "finished":
                self.state["run"] = resume
                self._save()
                return
        start = None
        if not resume and self.state["retrain"] == "continue":
            weights = run_weights(self.project, self.state["from_run"])
            if weights.adapter is not None and self.project.config.training.method == "lora":
                start = weights.adapter
            else:
                self.on_event(Status("the starting run has no LoRA adapter to continue; training a fresh one"))

        def on_event(event) -> None:
            if isinstance(event, TrainStarted) and self.state.get("train_run") != event.run_id:
                self.state["train_run"] = event.run_id      # a kill from here on resumes this run
                self._save()
            self.on_event(event)

        result = train(self.project, on_event=on_event, cancel=self.cancel, resume=resume or None,
                       start_adapter=start)
        if result.cancelled:
            raise Cancelled("improve stopped")
        self.state["run"] = result.run_id
        self._save()

    def _recheck(self) -> None:
        if self.state["run"] == self.state["from_run"]:
            self.state["disagree_after"] = self.state.get("disagree_before")
            self._save()
            return
        answers = records_of(self.answers_path)
        by_id = {r["id"]: r for r in self._probe_rows()}
        rows = [by_id[a["id"]] for a in answers]
        after = student_answers(self.project, self.state["run"], rows, on_event=self.on_event, cancel=self.cancel)
        atomic_write_jsonl(self.answers_path, [{**a, "after": text} for a, text in zip(answers, after)])
        self.state["disagree_after"] = sum(g.size for g in self.groups(after=True))
        self._save()

    def _evaluate(self) -> None:
        from .evaluate import evaluate
        if not (self.state["run"] == self.state["from_run"]
                and (self.project.run_dir(self.state["run"]) / "eval" / "metrics.json").exists()):
            evaluate(self.project, self.state["run"], on_event=self.on_event, cancel=self.cancel,
                     teacher=self.teacher())
        report = self.report()
        atomic_write_text(self.dir / "report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        self.on_event(RoundReport(report))

    # ------------------------------------------------------------ the report
    def report(self) -> dict:
        s = self.state
        n = int(s.get("probe_answered", 0))
        before, after = s.get("disagree_before"), s.get("disagree_after")
        mark = {"round": self.n, "chain": self.chain.parent.name}
        added = [r for r in self.project.kept_rows()
                 if {k: ((r.get("meta") or {}).get("improve") or {}).get(k) for k in mark} == mark]
        return {
            "round": self.n, "chain": self.chain.parent.name, "from_run": s["from_run"], "run": s.get("run"),
            "retrain": s.get("retrain"), "rows_planned": sum((s.get("plan") or {}).values()),
            "rows_added": len(added),
            "probe": {"size": n, "disagree_before": _share(before, n), "disagree_before_ci": list(wilson(before or 0, n)),
                      "disagree_after": _share(after, n), "disagree_after_ci": list(wilson(after or 0, n)),
                      "disagreements_before": before, "disagreements_after": after},
            "test_before": test_summary(self.project, s["from_run"]),
            "test_after": test_summary(self.project, s.get("run")),
            "groups": (s.get("groups") or [])[:TOP_GROUPS],
            "review_filter": f"round:{self.n}",
        }


def records_of(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _share(count, n: int):
    return None if count is None or not n else count / n


def test_summary(project: Project, run_id: Optional[str], resamples: int = 1000) -> Optional[dict]:
    """A run's test headline with its 95% bootstrap interval, the gap closed with its interval and the
    evaluation's baselines where it has them; None before the run is evaluated."""
    if not run_id:
        return None
    from .evaluate import read_eval
    try:
        result = read_eval(project, run_id)
    except StillroomError:
        return None
    m = result.metrics
    head = m["headline"]
    scores = [r["outputs"]["tuned"]["score"] for r in result.records]
    low, high = _bootstrap_mean(scores, resamples, project.config.evaluation.seed)
    out = {"metric": head, "tuned": m["models"]["tuned"].get(head), "tuned_ci": [low, high],
           "teacher": m["models"]["teacher"].get(head), "base": m["models"]["base"].get(head),
           "gap_closed": m["gap_closed"], "n": m["n"]}
    if "baselines" in m:
        out["baselines"] = m["baselines"]
    return out


def _bootstrap_mean(values, resamples: int, seed: int):
    if not values:
        return None, None
    import numpy as np
    x = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    low, high = np.quantile(x[idx].mean(axis=1), [0.025, 0.975])
    return float(low), float(high)


# ---------------------------------------------------------------- the loop

def improve(project: Project, *, rounds: Optional[int] = None, review: bool = False, probe: Optional[int] = None,
            run: Optional[str] = None, teacher=None, on_event: EventSink = ignore,
            cancel: Optional[threading.Event] = None) -> ImproveResult:
    """Run (or resume) an improve chain (see _open_chain). `rounds`: rounds to finish in this call, an
    interrupted one counted (default: what the interrupted chain was asked for, else 1); `run`: start a
    new chain from this finished run; `probe`: probe inputs per new round (default improve.probe);
    `review`: stop after a round's targeting.
    `teacher`: a loaded teacher to use (else the project's, loaded when first needed)."""
    cancel = cancel or threading.Event()
    if rounds is not None and rounds < 1:
        raise StillroomError(f"--rounds must be at least 1, got {rounds}")
    if probe is not None and probe < 1:
        raise StillroomError(f"--probe must be at least 1, got {probe}")
    chain = _open_chain(project, rounds, run, on_event)
    total = int((read_json(chain / "chain.json") or {}).get("rounds", 1))
    loaded = {"model": teacher}

    def get_teacher():
        if loaded["model"] is None:
            from .backends import load_teacher
            on_event(Status(f"loading teacher {project.config.teacher.model}"))
            loaded["model"] = load_teacher(project, batched=True)      # it writes rows and probes
        return loaded["model"]

    result = ImproveResult(str(chain))
    try:
        for n in range(1, total + 1):
            if _round_step(chain, n) == "done":
                continue
            step = Round(project, chain, n, total, teacher=get_teacher, on_event=on_event, cancel=cancel,
                         review=review, probe=probe)
            report = step.run()
            if report is None:
                result.review_round, result.review_filter = n, f"round:{n}"
                return result
            result.rounds.append(report)
    except Cancelled:
        result.cancelled = True
    finally:
        if teacher is None and loaded["model"] is not None:
            loaded["model"].close()
    return result
