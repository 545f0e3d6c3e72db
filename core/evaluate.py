"""Evaluation: teacher, base student and tuned student answer the same held-out inputs, side by side.

The teacher is asked exactly as in generation (few-shot completion for a base teacher, chat for an
instruct one), with shots drawn only from training seeds, never from test rows. The students are
asked the way they were trained (the row's system prompt and input through the chat template) and
decode in left-padded batches; an adapter run loads the student once and answers as the base model
with the adapter switched off. A classification answer ends at its label (or its first line).

Baselines (evaluation.baselines) answer beside the base student: few-shot (evaluation.few_shot seeds
as chat turns, or a completion prompt), scored (classification: the label the base student gives the
highest log-probability, no text to parse) and seed-only (the student trained on the seeds alone,
core.seed_only). The headline stays the gap closed against the base student; beside it, the gap closed
against the best prompted baseline and tuned − seed-only, each with a paired bootstrap interval.

Output, under runs/<run-id>/eval/ (each file written whole, atomically):
    predictions.jsonl   one record per test row: input, reference, each model's answer, scores, latency
    metrics.json        per-model metrics, the headline metric, gap closed with its 95% bootstrap CI
    report.md           the table a person reads in ten seconds, plus the worst examples
"""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from . import metrics, records
from .answer_cache import AnswerCache, student_identity, teacher_identity
from .backends.base import Completion, SamplingParams, ScoresContinuations, TextModel, choose_mode, supports
from .errors import Cancelled, ConfigError, StillroomError
from .events import EvalFinished, EvalProgress, EventSink, Status, ignore
from .fsio import atomic_write_jsonl, atomic_write_text
from .project import Project, text_id
from .models import ROLE_TITLES
from .prompts import Prompter, Request, ask
from .tasks import kind_named, task_kind

MODELS = ("teacher", "base", "tuned")
BASELINES = {"few-shot": "few_shot", "scored": "scored", "seed-only": "seed_only"}   # setting -> key
COLUMNS = ("teacher", "base", "few_shot", "scored", "seed_only", "tuned")          # table order
PROMPTED = ("base", "few_shot", "scored")          # what a user gets from the base student without training
TITLES = {**ROLE_TITLES, "few_shot": "base few-shot", "scored": "base scored", "seed_only": "seed-only student"}


def model_keys(result: dict) -> list[str]:
    """The models an evaluation scored, in table order (older evaluations have the three only)."""
    return [k for k in COLUMNS if k in result["models"]]


@dataclass
class EvalResult:
    run_id: str
    eval_dir: Path
    metrics: dict
    records: list = field(default_factory=list)

    @property
    def gap(self) -> dict:
        return self.metrics["gap_closed"]

    @property
    def headline(self) -> str:
        return self.metrics["headline"]

    def score(self, model: str) -> float:
        return self.metrics["models"][model][self.headline]


# ---------------------------------------------------------------- runs

@dataclass(frozen=True)
class RunWeights:
    run_id: str
    run_dir: Path
    student_ref: str           # the base student the run started from
    adapter: Optional[Path]    # LoRA adapter folder, or None for a full fine-tune
    model_dir: Optional[Path]  # full fine-tune folder


def run_weights(project: Project, run: Optional[str] = None) -> RunWeights:
    """What a training run left: its adapter (or full model) and the student it started from."""
    run_dir = project.run_dir(run)
    config = {}
    config_path = run_dir / "config.json"
    if config_path.exists():
        try:
            config = json.loads(config_path.read_text("utf-8"))
        except (OSError, ValueError):
            raise StillroomError(f"{config_path}: unreadable run config") from None
    student = config.get("student") if isinstance(config, dict) else None
    if isinstance(student, dict):
        student = student.get("model") or student.get("ref")
    if not isinstance(student, str) or not student:
        student = config.get("student_model") if isinstance(config.get("student_model"), str) else None
    return weights_in(run_dir, student or project.config.student.model, project.root)


def weights_in(run_dir: Path, student: str, project_root: Path) -> RunWeights:
    adapter = run_dir / "adapter"
    model_dir = run_dir / "model"
    if (adapter / "adapter_config.json").exists():
        return RunWeights(run_dir.name, run_dir, student, adapter, None)
    if (model_dir / "config.json").exists():
        return RunWeights(run_dir.name, run_dir, student, None, model_dir)
    raise StillroomError(f"{run_dir}: the run has no adapter/ or model/ folder (unfinished or stopped "
                         f"before its first save)", f"train again: stillroom train {project_root}")


def load_one(project: Project, weights: RunWeights, name: str, *, device: Optional[str] = None):
    """The trained student of `weights` alone (the seed-only student)."""
    from .backends.hf import HFModel
    device = device or project.config.evaluation.device
    if weights.adapter is not None:
        return HFModel.load(weights.student_ref, project_dir=project.root, adapter=weights.adapter,
                            device=device, name=name)
    return HFModel.load(str(weights.model_dir), project_dir=project.root, device=device, name=name)


def load_students(project: Project, weights: RunWeights, *, device: Optional[str] = None,
                  on_event: EventSink = ignore):
    """(base, tuned) HFModels. An adapter run shares one copy of the weights between the two."""
    from .backends.hf import HFModel
    cfg = project.config
    device = device or cfg.evaluation.device
    on_event(Status(f"loading student {weights.student_ref}"
                    + (f" with the adapter of run {weights.run_id}" if weights.adapter else "")))
    if weights.adapter is not None:
        tuned = HFModel.load(weights.student_ref, project_dir=project.root, adapter=weights.adapter,
                             device=device, name=f"{_short(weights.student_ref)}+{weights.run_id}")
        base = tuned.base_view()
        if base is not None:
            base.name = _short(weights.student_ref)
            return base, tuned
        return HFModel.load(weights.student_ref, project_dir=project.root, device=device,
                            name=_short(weights.student_ref)), tuned
    base = HFModel.load(weights.student_ref, project_dir=project.root, device=device,
                        name=_short(weights.student_ref))
    tuned = HFModel.load(str(weights.model_dir), project_dir=project.root, device=device,
                         name=f"{_short(weights.student_ref)}@{weights.run_id}")
    return base, tuned


def _short(ref: str) -> str:
    return ref.split(":", 1)[1] if ref.startswith("bundled:") else Path(ref).name or ref


# ---------------------------------------------------------------- prompts

def test_rows(project: Project, limit: Optional[int] = None) -> list[dict]:
    rows = project.tests()
    if not rows:
        raise StillroomError(f"{project.root}: no held-out test rows; add a test.jsonl, or at least 8 seeds "
                             f"so a share (evaluation.test_fraction) can be held out")
    n = limit if limit else project.config.evaluation.max_examples
    return rows[:n] if n else rows


def shot_pool(project: Project, tests: Sequence[dict]) -> list[dict]:
    """Seeds the teacher may see as worked examples: never a test row."""
    held = {text_id(records.user_text(r)) for r in project.tests()} | \
        {text_id(records.user_text(r)) for r in tests}
    return [r for r in project.seeds() if text_id(records.user_text(r)) not in held]


def student_messages(row: dict, system_prompt: str) -> list[dict]:
    """The conversation a student answers: the row's system prompt (else the task's) and its input."""
    messages = records.prompt_messages(row)
    if messages and messages[0]["role"] != "system" and system_prompt:
        messages = [{"role": "system", "content": system_prompt}] + messages
    return messages


def shots_for(pool: Sequence[dict], k: int, seed: int, index: int) -> list[dict]:
    rng = random.Random(f"eval:{seed}:{index}")
    return rng.sample(list(pool), min(k, len(pool)))


def clean_answer(text: str) -> str:
    return text.strip()


# ---------------------------------------------------------------- the evaluation

class Evaluation:
    def __init__(self, project: Project, weights: RunWeights, tests: list[dict], *,
                 on_event: EventSink = ignore, cancel: Optional[threading.Event] = None,
                 judge: Optional[bool] = None, fresh: bool = False):
        self.project = project
        self.config = project.config
        self.weights = weights
        self.tests = tests
        self.on_event = on_event
        self.cancel = cancel or threading.Event()
        self.judge = self.config.evaluation.judge if judge is None else judge
        self.kind = task_kind(self.config.task)
        self.headline = self.kind.headline_metric(self.config.evaluation.headline)
        valid = set(self.kind.per_example) | {"judge"}
        if self.headline not in valid:
            raise ConfigError(f"{project.config_path}: evaluation.headline = {self.headline!r} does not fit a "
                              f"{self.config.task.type} task; use auto or one of {', '.join(sorted(valid))}")
        if self.headline == "judge" and not self.judge:
            raise ConfigError(f"{project.config_path}: evaluation.headline = \"judge\" needs "
                              f"evaluation.judge = true")
        self.pool = shot_pool(project, tests)
        self.skipped: dict[str, str] = {}          # baseline key -> why it did not run
        self.baselines = self._planned_baselines()
        self.keys = [k for k in COLUMNS if k in MODELS or k in self.baselines]
        self.outputs: dict[str, list[Optional[dict]]] = {m: [None] * len(tests) for m in self.keys}
        self.names: dict[str, str] = {}
        self.modes: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.answers = AnswerCache(project, self.config, tests, self.pool,
                                   enabled=self.config.evaluation.reuse_answers and not fresh)

    def _planned_baselines(self) -> list[str]:
        planned = []
        for setting in self.config.evaluation.baselines:
            key = BASELINES[setting]
            if key == "scored" and not self.kind.label_set:
                self.skipped[key] = "not a classification task (no labels to score)"
            elif key in ("few_shot", "scored") and not self.pool:
                self.skipped[key] = "no seeds outside the test rows to show"
            elif key not in planned:
                planned.append(key)
        return planned

    def skip(self, key: str, reason: str) -> None:
        if key in self.baselines:
            self.baselines.remove(key)
            self.keys.remove(key)
            self.outputs.pop(key, None)
        self.skipped[key] = reason

    @property
    def answer_params(self) -> SamplingParams:
        """Greedy; a classification answer ends at its label or its first line."""
        return SamplingParams(temperature=0.0, max_tokens=self.config.evaluation.max_tokens,
                              answers=tuple(self.kind.label_set))

    def few_shot_shots(self) -> list[dict]:
        """The seeds every few-shot and scored prompt shows: fixed, every label equally often."""
        rng = random.Random(f"eval-shots:{self.config.evaluation.seed}")
        return self.kind.answer_shots(list(self.pool), rng, self.config.evaluation.few_shot)

    def _system(self, row: dict) -> str:
        return records.system_text(row) or self.config.task.system_prompt

    def _check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("evaluation stopped")

    # ------------------------------------------------------------ kept answers
    def reuse(self, key: str, identity: Optional[dict]) -> bool:
        """Fill a run-independent column from an earlier evaluation's answers (core.answer_cache)."""
        if key not in self.outputs:
            return False
        kept = self.answers.load(key, identity)
        if kept is None:
            return False
        self.names[key], self.modes[key], self.outputs[key] = kept["name"], kept["mode"], kept["outputs"]
        self.on_event(Status(f"{TITLES[key]}: reusing the answers of an earlier evaluation with the same rows "
                             f"and settings"))
        self.on_event(EvalProgress(key, len(self.tests), len(self.tests)))
        return True

    def keep(self, key: str, identity: Optional[dict]) -> None:
        if key in self.outputs:
            self.answers.store(key, identity, self.names.get(key, key), self.modes.get(key, ""), self.outputs[key])

    # ------------------------------------------------------------ students
    def run_students(self, base: TextModel, tuned: TextModel) -> None:
        """The base student zero-shot and with its prompted baselines (kept between evaluations), then the
        tuned student."""
        identity = student_identity(self.project, self.weights.student_ref, base)
        for key, ask_column in (("base", lambda: self.answer_zero_shot("base", base)),
                                ("few_shot", lambda: self.run_few_shot(base)),
                                ("scored", lambda: self.run_scored(base))):
            if not self.reuse(key, identity):
                ask_column()
                self.keep(key, identity)
        self.answer_zero_shot("tuned", tuned)

    def answer_zero_shot(self, key: str, model: TextModel) -> None:
        """A student asked the way it was trained: the row's system prompt and input, nothing more."""
        ev = self.config.evaluation
        task = self.config.task
        params = self.answer_params
        self.names[key] = model.name
        chat = model.supports_chat
        self.modes[key] = "chat" if chat else "completion"
        prompter = Prompter(task, "completion")
        total = len(self.tests)
        self.on_event(EvalProgress(key, 0, total))
        for start in range(0, total, ev.batch_size):
            self._check()
            batch = self.tests[start:start + ev.batch_size]
            if chat:
                convs = [student_messages(r, task.system_prompt) for r in batch]
                answers = model.chat_batch(convs, params, cancel=self.cancel)
            else:
                requests = [prompter.answer(shots_for(self.pool, self.config.generation.few_shot,
                                                      ev.seed, start + i), records.user_text(r),
                                            task.system_prompt) for i, r in enumerate(batch)]
                stop_params = SamplingParams(**{**params.__dict__, "stop": requests[0].stop})
                answers = model.complete_batch([q.prompt for q in requests], stop_params,
                                               cancel=self.cancel)
            self._check()
            for i, answer in enumerate(answers):
                self.outputs[key][start + i] = _output(answer, batched=len(batch))
            self.on_event(EvalProgress(key, min(start + len(batch), total), total))

    # ------------------------------------------------------------ prompted baselines
    def few_shot_request(self, model: TextModel, row: dict) -> Request:
        """The base student shown the fixed few-shot seeds: as chat turns when it has a chat template,
        else as a completion prompt."""
        mode = "chat" if model.supports_chat else "completion"
        return Prompter(self.config.task, mode).answer(self.few_shot_shots(), records.user_text(row),
                                                       self._system(row))

    def run_few_shot(self, base: TextModel) -> None:
        if "few_shot" not in self.baselines:
            return
        ev = self.config.evaluation
        key = "few_shot"
        self.names[key] = base.name
        self.modes[key] = f"{'chat' if base.supports_chat else 'completion'}, {len(self.few_shot_shots())} shots"
        total = len(self.tests)
        self.on_event(EvalProgress(key, 0, total))
        for start in range(0, total, ev.batch_size):
            self._check()
            batch = self.tests[start:start + ev.batch_size]
            requests = [self.few_shot_request(base, r) for r in batch]
            if base.supports_chat:
                answers = base.chat_batch([list(q.messages) for q in requests], self.answer_params,
                                          cancel=self.cancel)
            else:
                params = SamplingParams(**{**self.answer_params.__dict__, "stop": requests[0].stop})
                answers = base.complete_batch([q.prompt for q in requests], params, cancel=self.cancel)
            self._check()
            for i, answer in enumerate(answers):
                self.outputs[key][start + i] = _output(answer, batched=len(batch))
            self.on_event(EvalProgress(key, min(start + len(batch), total), total))

    def scoring_prompt(self, model: TextModel, row: dict) -> tuple[str, list[str]]:
        """(prompt, one continuation per label): the few-shot prompt, and each label as a whole answer
        (closed by the chat template's end of turn, or by the end of the line)."""
        request = self.few_shot_request(model, row)
        labels = list(self.kind.label_set)
        if request.mode == "chat":
            prompt = model.render_chat(list(request.messages))
            end = model.answer_end(list(request.messages)) if hasattr(model, "answer_end") else ""
            return prompt, [label + end for label in labels]
        return request.prompt, [f" {label}\n" for label in labels]

    def run_scored(self, base: TextModel) -> None:
        if "scored" not in self.baselines:
            return
        if not supports(base, ScoresContinuations):
            self.skip("scored", f"{base.name} cannot score continuations")
            return
        key = "scored"
        labels = list(self.kind.label_set)
        self.names[key] = base.name
        self.modes[key] = f"{'chat' if base.supports_chat else 'completion'}, {len(self.few_shot_shots())} shots, " \
                          f"label log-probability"
        total = len(self.tests)
        self.on_event(EvalProgress(key, 0, total))
        for i, row in enumerate(self.tests):
            self._check()
            started = time.perf_counter()
            prompt, continuations = self.scoring_prompt(base, row)
            scores = base.score_continuations(prompt, continuations)
            self.outputs[key][i] = {"text": labels[scores.index(max(scores))], "finish_reason": "stop",
                                    "tokens": 0, "seconds": round(time.perf_counter() - started, 4),
                                    "batched": 1, "label_probs": _softmax(labels, scores)}
            self.on_event(EvalProgress(key, i + 1, total))

    # ------------------------------------------------------------ seed-only student
    def run_seed_only(self) -> None:
        """Train (or reuse) the seed-only student, then let it answer like the tuned one."""
        if "seed_only" not in self.baselines:
            return
        from .seed_only import seed_only_run
        try:
            run_dir = seed_only_run(self.project, self.weights.run_dir, self.tests, on_event=self.on_event,
                                    cancel=self.cancel)
        except Cancelled:
            raise
        except StillroomError as exc:
            self.skip("seed_only", str(exc))
            return
        self._check()
        weights = weights_in(run_dir, self.weights.student_ref, self.project.root)
        self.on_event(Status(f"loading the seed-only student ({run_dir.parent.name}/{run_dir.name})"))
        model = load_one(self.project, weights, f"{_short(weights.student_ref)} seeds only")
        try:
            self.answer_zero_shot("seed_only", model)
        finally:
            model.close()
        self.notes["seed_only"] = str(run_dir.relative_to(self.project.root))

    # ------------------------------------------------------------ teacher
    def run_teacher(self, teacher: TextModel) -> None:
        ev = self.config.evaluation
        gen = self.config.generation
        task = self.config.task
        mode = choose_mode(teacher, self.config.teacher.mode)
        self.names["teacher"] = teacher.name
        self.modes["teacher"] = mode
        if mode == "completion" and not self.pool:
            raise StillroomError(f"{self.project.seeds_path}: no training seeds left to show the teacher as "
                                 f"examples (every seed is a test row)")
        prompter = Prompter(task, mode)
        total = len(self.tests)
        self.on_event(EvalProgress("teacher", 0, total))
        # As in generation: a base teacher's label may be scored (calibrated), not sampled.
        scorer = self.kind.label_scorer(teacher, mode, prompter, self.pool, gen.label_shots, task.system_prompt)
        if scorer is not None:
            self.modes["teacher"] = "completion, calibrated label scoring"
            for i, row in enumerate(self.tests):
                self._check()
                started = time.perf_counter()
                label, probs = scorer.label(records.user_text(row))
                self.outputs["teacher"][i] = {"text": label, "finish_reason": "stop", "tokens": 1,
                                              "seconds": round(time.perf_counter() - started, 4), "batched": 1,
                                              "label_probs": probs}
                self.on_event(EvalProgress("teacher", i + 1, total))
            return
        for i, row in enumerate(self.tests):
            self._check()
            shots = shots_for(self.pool, gen.few_shot, ev.seed, i)
            system = records.system_text(row) or task.system_prompt
            request = prompter.answer(shots, records.user_text(row), system)
            params = SamplingParams(temperature=gen.label_temperature, top_p=gen.top_p,
                                    max_tokens=ev.max_tokens, seed=(ev.seed * 1_000_003 + i) % (2 ** 31))
            answer = ask(teacher, request, params, cancel=self.cancel)
            if answer.finish_reason == "cancelled":
                raise Cancelled("evaluation stopped")
            self.outputs["teacher"][i] = _output(answer)
            self.on_event(EvalProgress("teacher", i + 1, total))

    def run_judge(self, teacher: TextModel) -> None:
        mode = choose_mode(teacher, self.config.teacher.mode)
        params = SamplingParams(temperature=0.0, max_tokens=8)
        total = len(self.tests) * len(self.keys)
        done = 0
        self.on_event(EvalProgress("judge", 0, total))
        for i, row in enumerate(self.tests):
            for key in self.keys:
                self._check()
                out = self.outputs[key][i]
                request = metrics.judge_request(mode, self.config.task.description, records.user_text(row),
                                                records.answer_text(row), out["text"])
                reply = ask(teacher, request, params, cancel=self.cancel)
                out["judge_reply"] = reply.text.strip()[:200]
                out["judge"] = metrics.parse_judge(reply.text)
                done += 1
                self.on_event(EvalProgress("judge", done, total))

    # ------------------------------------------------------------ scoring
    def score(self) -> tuple[list[dict], dict]:
        references = [records.answer_text(r) for r in self.tests]
        per_model: dict[str, list[dict]] = {}
        summary: dict = {}
        for key in self.keys:
            answers = [o["text"] for o in self.outputs[key]]
            scores = [self.kind.score_example(a, ref) for a, ref in zip(answers, references)]
            if self.judge:
                for s, o in zip(scores, self.outputs[key]):
                    s["judge"] = o.get("judge") if o.get("judge") is not None else 0.0
            per_model[key] = scores
            agg = self.kind.aggregate(answers, references, scores)
            if self.judge:
                agg["judge"] = metrics.mean(s["judge"] for s in scores)
                agg["judge_unparsed"] = sum(1 for o in self.outputs[key] if o.get("judge") is None)
            outs = self.outputs[key]
            agg["seconds_per_answer"] = metrics.mean(o["seconds"] for o in outs)
            tokens = sum(o["tokens"] for o in outs)
            busy = sum(o["seconds"] for o in outs)
            agg["tokens_per_second"] = tokens / busy if busy else 0.0
            agg["truncated"] = sum(1 for o in outs if o["finish_reason"] == "length")
            agg["name"] = self.names.get(key, key)
            agg["mode"] = self.modes.get(key, "")
            if key in self.notes:
                agg["run"] = self.notes[key]
            summary[key] = agg
        ev = self.config.evaluation
        scores = {k: [s[self.headline] for s in per_model[k]] for k in self.keys}
        gap = metrics.bootstrap_gap_closed(scores["teacher"], scores["base"], scores["tuned"],
                                           resamples=ev.bootstrap, seed=ev.seed)
        # The best prompted baseline by its score on the whole test set; ties go to the simplest prompt.
        best = max((k for k in PROMPTED if k in scores), key=lambda k: (metrics.mean(scores[k]), -PROMPTED.index(k)))
        vs_prompted = metrics.bootstrap_gap_closed(scores["teacher"], scores[best], scores["tuned"],
                                                   resamples=ev.bootstrap, seed=ev.seed, base_name=TITLES[best])
        # Meaningful even when that baseline beats the teacher: does training beat prompting?
        over_prompted = metrics.bootstrap_difference(scores["tuned"], scores[best], resamples=ev.bootstrap,
                                                     seed=ev.seed)
        rows_added = (metrics.bootstrap_difference(scores["tuned"], scores["seed_only"], resamples=ev.bootstrap,
                                                   seed=ev.seed).to_dict() if "seed_only" in scores else None)
        rows = []
        for i, row in enumerate(self.tests):
            record = {"index": i, "id": text_id(records.user_text(row)), "input": records.user_text(row),
                      "system": records.system_text(row) or self.config.task.system_prompt,
                      "reference": references[i], "outputs": {}}
            for key in self.keys:
                out = dict(self.outputs[key][i])
                out["scores"] = metrics.public_scores(per_model[key][i])
                out["score"] = round(float(per_model[key][i][self.headline]), 4)
                record["outputs"][key] = out
            rows.append(record)
        result = {
            "run": self.weights.run_id, "task": self.config.task.name, "task_type": self.config.task.type,
            "headline": self.headline, "n": len(self.tests),
            "test_source": "test.jsonl" if self.project.test_path.exists() else "seed split",
            "models": summary, "gap_closed": gap.to_dict(),
            "gap_closed_vs_prompted": {**vs_prompted.to_dict(), "baseline": best},
            "tuned_minus_prompted": {**over_prompted.to_dict(), "baseline": best},
            "rows_added": rows_added,
            "baselines": list(self.baselines), "skipped_baselines": dict(self.skipped), "judge": self.judge,
            "reused_answers": list(self.answers.reused),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return rows, result


def _softmax(labels: Sequence[str], scores: Sequence[float]) -> dict:
    import math
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    return {label: round(w / total, 4) for label, w in zip(labels, weights)}


def _output(answer: Completion, batched: int = 1) -> dict:
    return {"text": clean_answer(answer.text), "finish_reason": answer.finish_reason,
            "tokens": answer.completion_tokens,
            # A batch's wall time is shared by its rows.
            "seconds": round(answer.seconds / max(1, batched), 4), "batched": batched}


def evaluate(project: Project, run: Optional[str] = None, *, on_event: EventSink = ignore,
             cancel: Optional[threading.Event] = None, teacher: Optional[TextModel] = None,
             limit: Optional[int] = None, judge: Optional[bool] = None,
             students: Optional[tuple] = None, fresh: bool = False) -> EvalResult:
    """Evaluate a run (default: the latest) and write runs/<id>/eval/. Loads the models unless given;
    reuses the teacher's and base student's answers of an earlier evaluation unless `fresh`."""
    weights = run_weights(project, run)
    tests = test_rows(project, limit)
    evaluation = Evaluation(project, weights, tests, on_event=on_event, cancel=cancel, judge=judge, fresh=fresh)
    start = time.perf_counter()
    evaluation.run_seed_only()         # first, so training never shares the memory with the students
    own_students = students is None
    base, tuned = students if students is not None else load_students(project, weights, on_event=on_event)
    try:
        evaluation.run_students(base, tuned)
    finally:
        if own_students:
            tuned.close()
            base.close()
    # A configured teacher is known without loading it; one passed in says what it is, or is asked again.
    own_teacher = teacher is None
    teacher_id = teacher_identity(project) if own_teacher else getattr(teacher, "cache_identity", None)
    teacher_reused = evaluation.reuse("teacher", teacher_id)
    if not teacher_reused or evaluation.judge:
        if own_teacher:
            from .backends import load_teacher
            on_event(Status(f"loading teacher {project.config.teacher.model}"))
            teacher = load_teacher(project)
        try:
            if not teacher_reused:
                evaluation.run_teacher(teacher)
                evaluation.keep("teacher", teacher_id)
            if evaluation.judge:
                evaluation.run_judge(teacher)
        finally:
            if own_teacher:
                teacher.close()
    rows, result = evaluation.score()
    result["seconds"] = round(time.perf_counter() - start, 1)
    eval_dir = weights.run_dir / "eval"
    atomic_write_jsonl(eval_dir / "predictions.jsonl", rows)
    atomic_write_text(eval_dir / "metrics.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(eval_dir / "report.md", render_report(result, rows))
    on_event(EvalFinished(weights.run_id, result))
    return EvalResult(weights.run_id, eval_dir, result, rows)


def read_eval(project: Project, run: Optional[str] = None) -> EvalResult:
    """A finished evaluation from disk (for compare and the TUI)."""
    run_dir = project.run_dir(run)
    eval_dir = run_dir / "eval"
    metrics_path = eval_dir / "metrics.json"
    if not metrics_path.exists():
        raise StillroomError(f"{run_dir}: run {run_dir.name} has not been evaluated yet",
                             f"run: stillroom eval {project.root} --run {run_dir.name}")
    try:
        result = json.loads(metrics_path.read_text("utf-8"))
    except (OSError, ValueError):
        raise StillroomError(f"{metrics_path}: unreadable; evaluate the run again") from None
    rows = []
    path = eval_dir / "predictions.jsonl"
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise StillroomError(f"{path}:{number}: invalid JSON; evaluate the run again") from None
    return EvalResult(run_dir.name, eval_dir, result, rows)


# ---------------------------------------------------------------- report

def fmt_score(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def fmt_pct(value) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def gap_line(gap: dict) -> str:
    if gap.get("value") is None:
        return f"gap closed: undefined ({gap.get('note') or 'no teacher–base gap'})"
    text = f"gap closed: {fmt_pct(gap['value'])}"
    if gap.get("ci_low") is not None:
        text += f" (95% CI {fmt_pct(gap['ci_low'])} to {fmt_pct(gap['ci_high'])})"
    return text


def fmt_signed(value) -> str:
    return "–" if value is None else f"{value:+.3f}"


def interval(figure: dict, fmt=fmt_pct) -> str:
    """" [low, high]" for a figure with a 95% interval, else ""."""
    if not figure or figure.get("ci_low") is None:
        return ""
    return f" [{fmt(figure['ci_low'])}, {fmt(figure['ci_high'])}]"


def side_figures(result: dict) -> list[tuple[str, str]]:
    """(label, value with its 95% interval) for the figures beside the headline: the gap closed against
    the best prompted baseline, and tuned − seed-only. Older evaluations have neither."""
    out = []
    prompted = result.get("gap_closed_vs_prompted")
    if prompted:
        best = TITLES.get(prompted.get("baseline"), prompted.get("baseline") or "")
        value = (f"undefined ({prompted.get('note') or 'no gap'})" if prompted.get("value") is None
                 else fmt_pct(prompted["value"]) + interval(prompted))
        out.append((f"gap closed vs best prompted ({best})", value))
    over = result.get("tuned_minus_prompted")
    if over:
        best = TITLES.get(over.get("baseline"), over.get("baseline") or "")
        out.append((f"tuned − best prompted ({best})", fmt_signed(over.get("value")) + interval(over, fmt_signed)))
    added = result.get("rows_added")
    if added:
        out.append(("tuned − seed-only (what the generated rows added)",
                    fmt_signed(added.get("value")) + interval(added, fmt_signed)))
    return out


def verdict(gap: dict) -> str:
    value, low = gap.get("value"), gap.get("ci_low")
    if value is None or gap.get("note"):
        return gap.get("note") or ""
    if low is not None and low >= 0.8:
        return "meets the 80% bar with confidence"
    if value >= 0.8:
        return "meets the 80% bar, but the interval reaches below it: evaluate on more test rows"
    return "below the 80% bar: more or better training rows, or more training, should help"


def prompted_warning(result: dict) -> str:
    """A line when the best prompted baseline does better than the tuned student beyond doubt (its
    interval is below zero): prompting the base student is then the better deal, whatever the headline."""
    over = result.get("tuned_minus_prompted") or {}
    if over.get("ci_high") is None or over["ci_high"] >= 0:
        return ""
    best = TITLES.get(over.get("baseline"), over.get("baseline") or "the best prompted baseline")
    return (f"the {best} does better than the tuned student ({fmt_signed(over['value'])}"
            f"{interval(over, fmt_signed)}): prompting the base student beats this run")


def table_columns(result: dict) -> list[str]:
    head = result["headline"]
    cols = [head] + [c for c in kind_named(result["task_type"]).columns if c != head]
    if result.get("judge") and "judge" not in cols:
        cols.append("judge")
    return cols


def _cell(metric: str, value) -> str:
    if metric in ("unparseable",):
        return str(value)
    return fmt_score(value)


def _one_line(text: str, width: int = 160) -> str:
    return records.one_line(text, width).replace("`", "'")      # model text must not break the markdown


def render_report(result: dict, rows: list[dict], worst: int = 5) -> str:
    cols = table_columns(result)
    head = result["headline"]
    lines = [f"# Evaluation of run {result['run']} — {result['task']}", "",
             f"{result['n']} held-out examples ({result['test_source']}); headline metric: "
             f"**{metrics.METRIC_NAMES.get(head, head)}**.", "",
             "| model | | " + " | ".join(metrics.METRIC_NAMES.get(c, c) for c in cols) + " | s/answer |",
             "|---|---|" + "---:|" * len(cols) + "---:|"]
    for key in model_keys(result):
        m = result["models"][key]
        cells = [_cell(c, m.get(c)) for c in cols]
        cells[0] = f"**{cells[0]}**"
        lines.append(f"| {TITLES[key]} | {m['name']} ({m['mode']}) | " + " | ".join(cells)
                     + f" | {m['seconds_per_answer']:.2f} |")
    gap = result["gap_closed"]
    lines += ["", f"**{gap_line(gap)}** — {verdict(gap)}", ""]
    warning = prompted_warning(result)
    if warning:
        lines += [f"**{warning}**", ""]
    for label, value in side_figures(result):
        lines.append(f"- {label}: **{value}** (95% paired bootstrap interval)")
    for key, reason in (result.get("skipped_baselines") or {}).items():
        lines.append(f"- {TITLES.get(key, key)}: not run ({reason})")
    if "seed_only" in result["models"] and result["models"]["seed_only"].get("run"):
        lines.append(f"- the seed-only student is `{result['models']['seed_only']['run']}`, trained on the "
                     f"seeds alone with this run's steps and settings")
    if result.get("reused_answers"):
        lines.append("- reused from an earlier evaluation with the same rows, models and settings (answers and "
                     "s/answer as measured then): " + ", ".join(TITLES[k] for k in result["reused_answers"]))
    if lines[-1] != "":
        lines.append("")
    lines += kind_named(result["task_type"]).report_lines(result)
    ranked = sorted(rows, key=lambda r: (r["outputs"]["tuned"]["score"], -r["outputs"]["teacher"]["score"],
                                         r["index"]))
    ranked = [r for r in ranked if r["outputs"]["tuned"]["score"] < 1.0][:worst]
    if ranked:
        lines += [f"## Worst examples for the tuned student ({len(ranked)})", ""]
        for r in ranked:
            lines.append(f"### #{r['index']}: {_one_line(r['input'], 100)}")
            lines.append("")
            lines.append(f"- reference: `{_one_line(r['reference'])}`")
            for key in MODELS:
                out = r["outputs"][key]
                answer = _one_line(out["text"]) or "(empty)"
                lines.append(f"- {ROLE_TITLES[key]} ({fmt_score(out['score'])}): `{answer}`")
            lines.append("")
    return "\n".join(lines) + "\n"
