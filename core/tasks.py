"""Task kinds: everything that differs between a classification, extraction, QA and generation task.

One class per kind owns what depends on the kind: how an answer is checked, what a few-shot prompt
says about answers, which metrics score a test row and which columns the report shows, and the
generation policy (whether labels are balanced and scored, whether a cut-off answer is rejected).
The rest of the engine asks `task_kind(config.task)` and never compares task type names, so adding a
kind means adding one class to KINDS.

    kind = task_kind(config.task)        # bound to the task's labels and JSON schema
    kind.check_answer(text)              # (rejection reason or None, normalised answer)
    kind.score_example(answer, reference)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Optional, Sequence

from . import metrics, records
from .errors import ConfigError, StillroomError
from .quality import parse_json_answer, parse_label, repetitive, schema_problem

if TYPE_CHECKING:
    import random

    from .config import TaskConfig
    from .labeling import LabelScorer
    from .prompts import Prompter


@dataclass(frozen=True)
class TaskKind:
    """A task kind and the task settings it reads. The base answers free text (QA, generation)."""
    labels: tuple = ()
    json_schema: str = ""   # JSON Schema text; any kind's answers must be JSON matching it when it is set

    name: ClassVar[str] = ""
    headline: ClassVar[str] = ""           # the per-example score the gap closed is computed on
    per_example: ClassVar[tuple] = ("exact_match", "token_f1", "rouge_l", "chrf")
    columns: ClassVar[tuple] = ()          # the report table's metric columns, before the headline moves first
    defaults: ClassVar[dict] = {}          # task settings of a new project of this kind
    uses_labels: ClassVar[bool] = False    # reads task.labels
    uses_schema: ClassVar[bool] = False    # answers are JSON even without a schema
    min_seeds: ClassVar[int] = 1           # seeds the teacher needs to learn the task from

    @property
    def label_set(self) -> tuple:
        """The answers a row may have when the kind limits them (shown in prompts and forms, balanced
        in generation); empty for free answers."""
        return ()

    @property
    def wants_json(self) -> bool:
        return self.uses_schema or bool(self.json_schema)

    @classmethod
    def new_task_settings(cls) -> dict:
        """TaskConfig fields for a new project of this kind (fresh lists, safe to keep)."""
        return json.loads(json.dumps(cls.defaults))

    # ------------------------------------------------------------ settings and seeds
    def check_config(self, where: Callable[[str, str], str]) -> None:
        """Raise ConfigError when the task settings cannot describe a task of this kind."""

    def check_seeds(self, seeds: Sequence[dict], path) -> None:
        """Raise StillroomError when the seeds in `path` cannot teach the task."""
        if len(seeds) < self.min_seeds:
            raise StillroomError(f"{path}: {len(seeds)} usable seed example(s); the teacher needs at "
                                 f"least {self.min_seeds} to learn the task from", "add seed examples first")

    # ------------------------------------------------------------ answers
    def check_answer(self, answer: str) -> tuple[Optional[str], str]:
        """(rejection reason or None, normalised answer) for a model's answer."""
        if not answer.strip():
            return "empty-answer", answer
        return self._check_text(answer)

    def _check_text(self, answer: str) -> tuple[Optional[str], str]:
        if self.wants_json:
            return self._check_json(answer)
        if repetitive(answer):
            return "repetitive", answer
        return None, answer.strip()

    def _check_json(self, answer: str) -> tuple[Optional[str], str]:
        try:
            value = parse_json_answer(answer)
        except ValueError:
            return "invalid-json", answer
        if self.json_schema and schema_problem(value, json.loads(self.json_schema)):
            return "schema-mismatch", answer
        return None, json.dumps(value, ensure_ascii=False)

    def answer_problem(self, answer: str) -> Optional[str]:
        """Why a hand-written, non-empty answer does not fit the task, in a sentence; None if it fits."""
        if not self.wants_json:
            return None
        try:
            value = parse_json_answer(answer)
        except ValueError as exc:
            return f"The answer is not valid JSON: {exc}."
        if self.json_schema:
            try:
                problem = schema_problem(value, json.loads(self.json_schema))
            except ValueError:
                problem = None
            if problem:
                return f"The answer does not match the JSON schema: {problem}."
        return None

    def imported_answers_problem(self, placed: Sequence[tuple[str, str]], source) -> Optional[str]:
        """One line naming the places ("line 4") of imported answers that do not fit the task, with the
        first problem; None when they all fit. `placed` is (place, answer) pairs."""
        bad = [(place, answer) for place, answer in placed if self.answer_problem(answer)]
        if not bad:
            return None
        return (f"{source}: {records.places_text([place for place, _ in bad])}: "
                f"{self.answer_problem(bad[0][1])}")

    # ------------------------------------------------------------ prompts
    def answer_rule(self, output_name: str) -> str:
        """A line for a few-shot prompt's header saying what an answer may be; '' when anything goes."""
        return ""

    # ------------------------------------------------------------ generation policy
    def check_teacher_answer(self, text: str, finish_reason: str, intended: Optional[str],
                             agreement: bool) -> tuple[Optional[str], str, dict]:
        """(rejection reason or None, answer, notes for the row's meta) for the teacher's answer to a
        generated input: the answer checks, and a free answer cut off at the token limit is truncated."""
        reason, answer = self.check_answer(text)
        if reason is None and finish_reason == "length":
            reason = "truncated"
        return reason, answer, {}

    def answer_shots(self, seeds: Sequence[dict], rng: "random.Random", k: int) -> list[dict]:
        """k worked examples, drawn with `rng`, to show with an input the teacher answers."""
        return rng.sample(seeds, k)

    def label_scorer(self, model, mode: str, prompter: "Prompter", pool: Sequence[dict], shots: int,
                     system: str = "") -> Optional["LabelScorer"]:
        """A scorer when this model's answers are better scored than sampled (see core/labeling.py)."""
        return None

    # ------------------------------------------------------------ metrics and the report
    def headline_metric(self, configured: str = "auto") -> str:
        return configured if configured and configured != "auto" else self.headline

    def score_example(self, answer: str, reference: str) -> dict:
        """Per-example scores in [0, 1] (internal fields start with '_')."""
        return {"exact_match": metrics.exact_match(answer, reference),
                "token_f1": metrics.token_f1(answer, reference),
                "rouge_l": metrics.rouge_l(answer, reference), "chrf": metrics.chrf(answer, reference)}

    def aggregate(self, answers: Sequence[str], references: Sequence[str], scores: Sequence[dict]) -> dict:
        """Set-level metrics from the answers and their per-example scores."""
        out = self._means(scores)
        out["chrf_corpus"] = metrics.corpus_chrf(answers, references)
        return out

    def _means(self, scores: Sequence[dict]) -> dict:
        n = len(scores)
        return {"n": n, **{key: sum(s[key] for s in scores) / n if n else 0.0 for key in self.per_example}}

    @classmethod
    def report_lines(cls, result: dict) -> list[str]:
        """Markdown sections the evaluation report adds for this kind."""
        return []


@dataclass(frozen=True)
class Classification(TaskKind):
    name = "classification"
    headline = "accuracy"
    per_example = ("accuracy",)
    columns = ("accuracy", "macro_f1", "unparseable")
    defaults = {"input_name": "Text", "output_name": "Label", "labels": ["label_a", "label_b"]}
    uses_labels = True
    min_seeds = 2

    @property
    def label_set(self) -> tuple:
        return self.labels

    def check_config(self, where) -> None:
        labels = list(self.labels)
        if not labels:
            raise ConfigError(f"{where('task', 'labels')}: task.labels must list at least two labels "
                              f"for a classification task")
        if len(labels) < 2:
            raise ConfigError(f"{where('task', 'labels')}: task.labels must list at least two labels, "
                              f"got {labels!r}")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where('task', 'labels')}: task.labels has duplicates: {labels!r}")

    def check_seeds(self, seeds, path) -> None:
        super().check_seeds(seeds, path)
        unknown = sorted({records.answer_text(r) for r in seeds} - set(self.labels))
        if unknown:
            raise StillroomError(f"{path}: seed answer(s) {', '.join(map(repr, unknown))} "
                                 f"are not in task.labels ({', '.join(self.labels)})")

    def _check_text(self, answer):
        label = parse_label(answer, self.labels)
        return ("label-not-in-set", answer) if label is None else (None, label)

    def answer_problem(self, answer):
        if self.labels and answer.strip() not in self.labels:
            return f"{answer.strip()!r} is not in the label set ({', '.join(self.labels)})."
        return super().answer_problem(answer)

    def answer_rule(self, output_name):
        return f"{output_name} is one of: {', '.join(self.labels)}." if self.labels else ""

    def imported_answers_problem(self, placed, source):
        """The answers that are not labels (exactly, as generation's seed check reads them)."""
        bad = [(place, answer) for place, answer in placed if answer not in self.labels]
        if not bad:
            return None
        answers = ", ".join(repr(a) for a in dict.fromkeys(answer for _, answer in bad))
        return (f"{source}: {records.places_text([place for place, _ in bad])}: answers not among the "
                f"labels [{', '.join(self.labels)}]: {answers}")

    def check_teacher_answer(self, text, finish_reason, intended, agreement):
        """A label is never truncated; the teacher's label is noted, and with `agreement` a label other
        than the one the input was written for rejects the row."""
        reason, answer = self.check_answer(text)
        notes = {"teacher_label": answer if reason is None else text.strip()[:80]}
        if reason is None and agreement and intended and answer != intended:
            reason = "label-disagree"
        return reason, answer, notes

    def answer_shots(self, seeds, rng, k):
        """Every label shown equally often."""
        if not self.labels:
            return super().answer_shots(seeds, rng, k)
        from .labeling import balanced_shots
        shots = balanced_shots(rng.sample(seeds, len(seeds)), self.labels, k)
        rng.shuffle(shots)
        return shots

    def label_scorer(self, model, mode, prompter, pool, shots, system=""):
        """A base teacher's label is scored (calibrated), not sampled, when the model can score."""
        from .labeling import LabelScorer, balanced_shots
        if not LabelScorer.available(model, mode):
            return None
        return LabelScorer(model, prompter, balanced_shots(pool, self.labels, shots), self.labels, system)

    def score_example(self, answer, reference):
        """Plus `label`: the parsed label, or None when the answer names none (always wrong)."""
        label = parse_label(answer, self.labels) if self.labels else (answer.strip() or None)
        ref_label = parse_label(reference, self.labels) if self.labels else reference.strip()
        return {"label": label, "accuracy": float(label is not None and label == (ref_label or reference))}

    def aggregate(self, answers, references, scores):
        refs = [parse_label(r, self.labels) or r for r in references] if self.labels else list(references)
        return {"n": len(scores),
                **metrics.classification_report([s["label"] for s in scores], refs, self.labels)}

    @classmethod
    def report_lines(cls, result):
        """The tuned student's confusion matrix."""
        confusion = result["models"]["tuned"].get("confusion", {})
        if not confusion:
            return []
        labels = sorted({k for row in confusion.values() for k in row} | set(confusion))
        lines = ["## Tuned student: confusion (rows: reference, columns: answer)", "",
                 "| reference | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        for ref in sorted(confusion):
            lines.append(f"| {ref} | " + " | ".join(str(confusion[ref].get(l, 0)) for l in labels) + " |")
        return lines + [""]


@dataclass(frozen=True)
class Extraction(TaskKind):
    name = "extraction"
    headline = "field_f1"
    per_example = ("json_valid", "schema_valid", "field_f1")
    columns = ("field_f1", "json_valid", "schema_valid")
    defaults = {"input_name": "Text", "output_name": "JSON",
                "json_schema": '{"type": "object", "properties": {}, "required": []}'}
    uses_schema = True

    def score_example(self, answer, reference):
        schema = json.loads(self.json_schema) if self.json_schema else None
        return metrics.extraction_example(answer, reference, schema)

    def aggregate(self, answers, references, scores):
        out = self._means(scores)
        tp, n_pred, n_ref = (sum(s["_counts"][i] for s in scores) for i in range(3))
        out["field_precision_micro"], out["field_recall_micro"], out["field_f1_micro"] = \
            metrics.prf(tp, n_pred, n_ref)
        return out


@dataclass(frozen=True)
class QA(TaskKind):
    name = "qa"
    headline = "token_f1"
    columns = ("exact_match", "token_f1", "rouge_l", "chrf")
    defaults = {"input_name": "Question", "output_name": "Answer"}


@dataclass(frozen=True)
class Generation(TaskKind):
    name = "generation"
    headline = "rouge_l"
    columns = ("rouge_l", "chrf", "token_f1", "exact_match")
    defaults = {"input_name": "Input", "output_name": "Output"}


KINDS: dict[str, type[TaskKind]] = {kind.name: kind for kind in (Classification, Extraction, QA, Generation)}


def kind_named(name: str) -> type[TaskKind]:
    """The class of the task kind called `name` (a task type in stillroom.toml)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown task type {name!r}; expected one of {', '.join(KINDS)}") from None


def task_kind(task: "TaskConfig") -> TaskKind:
    """The kind of `task`, bound to its labels and JSON schema."""
    return kind_named(task.type)(tuple(task.labels), task.json_schema)
