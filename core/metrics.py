"""Task metrics, the judge prompt, and the share of the teacher–base gap a tuned student closed.

Every metric has a per-example form (a number in [0, 1] for each test row) and a set-level form.
The headline metric of a task type is always the mean of a per-example score, so the gap closed
`(tuned − base) / (teacher − base)` can be bootstrapped by resampling test examples.

classification  answers parsed to a label (unparseable counts as wrong and is counted): accuracy,
                macro-F1 over the labels seen, per-label precision/recall/F1, confusion matrix
extraction      JSON validity, schema validity, field-level precision/recall/F1 against the reference
qa, generation  exact match (normalised), token F1, ROUGE-L (rouge-score), chrF (sacrebleu)

Which of them a task reports, and its headline, belong to its kind (core/tasks.py).
"""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from .quality import parse_json_answer, schema_problem

UNPARSEABLE = "(unparseable)"

METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "unparseable": "unparseable",
                "json_valid": "JSON valid", "schema_valid": "schema valid", "field_f1": "field F1",
                "field_precision": "field precision", "field_recall": "field recall",
                "exact_match": "exact match", "token_f1": "token F1", "rouge_l": "ROUGE-L", "chrf": "chrF",
                "judge": "judge"}


# ---------------------------------------------------------------- text normalisation

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation) | set("“”‘’«»…–—")


def normalize_answer(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no English articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred and not ref:
        return 1.0
    if not pred or not ref:
        return 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


_ROUGE = None


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, with stemming)."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer
        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    if not prediction.strip() and not reference.strip():
        return 1.0
    return float(_ROUGE.score(reference, prediction)["rougeL"].fmeasure)


def chrf(prediction: str, reference: str) -> float:
    """Sentence chrF (sacrebleu), scaled to [0, 1]."""
    from sacrebleu.metrics import CHRF
    return float(CHRF().sentence_score(prediction, [reference]).score) / 100.0


def corpus_chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    from sacrebleu.metrics import CHRF
    if not predictions:
        return 0.0
    return float(CHRF().corpus_score(list(predictions), [list(references)]).score) / 100.0


# ---------------------------------------------------------------- classification

def classification_report(predictions: Sequence[Optional[str]], references: Sequence[str],
                          labels: Sequence[str] = ()) -> dict:
    """Metrics over parsed labels (None = unparseable, always wrong). Macro-F1 averages the labels that
    occur in the references or the parsed predictions (as scikit-learn does)."""
    n = len(references)
    correct = sum(1 for p, r in zip(predictions, references) if p is not None and p == r)
    seen = [l for l in labels if l in set(references) | set(p for p in predictions if p is not None)]
    seen += sorted((set(references) | {p for p in predictions if p is not None}) - set(seen))
    per_label = {}
    for label in seen:
        tp = sum(1 for p, r in zip(predictions, references) if p == label and r == label)
        fp = sum(1 for p, r in zip(predictions, references) if p == label and r != label)
        fn = sum(1 for p, r in zip(predictions, references) if r == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    confusion: dict = {}
    for p, r in zip(predictions, references):
        row = confusion.setdefault(r, {})
        key = p if p is not None else UNPARSEABLE
        row[key] = row.get(key, 0) + 1
    return {
        "accuracy": correct / n if n else 0.0,
        "macro_f1": sum(v["f1"] for v in per_label.values()) / len(per_label) if per_label else 0.0,
        "unparseable": sum(1 for p in predictions if p is None),
        "per_label": per_label,
        "confusion": confusion,
    }


# ---------------------------------------------------------------- extraction

def _norm_value(value):
    if isinstance(value, str):
        return " ".join(value.casefold().split())
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        items = [_norm_value(v) for v in value]
        try:
            return ("list", tuple(sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))))
        except TypeError:
            return ("list", tuple(map(str, items)))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _norm_value(v)) for k, v in value.items())))
    return value


def flatten_fields(value, prefix: str = "") -> dict:
    """Nested objects become dotted paths; lists are compared whole (order-insensitive); empty values
    (null, "", [], {}) count as an absent field."""
    out = {}
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, dict) and item:
                out.update(flatten_fields(item, path))
            elif item is None or item == "" or item == [] or item == {}:
                continue
            else:
                out[path] = _norm_value(item)
    elif prefix or value not in (None, "", [], {}):
        out[prefix or "$"] = _norm_value(value)
    return out


def field_scores(prediction, reference) -> tuple[int, int, int]:
    """(true positives, predicted fields, reference fields) for parsed JSON values."""
    pred = flatten_fields(prediction)
    ref = flatten_fields(reference)
    tp = sum(1 for key, value in pred.items() if key in ref and ref[key] == value)
    return tp, len(pred), len(ref)


def prf(tp: int, n_pred: int, n_ref: int) -> tuple[float, float, float]:
    if n_pred == 0 and n_ref == 0:
        return 1.0, 1.0, 1.0
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def extraction_example(answer: str, reference: str, schema: Optional[dict] = None) -> dict:
    try:
        predicted = parse_json_answer(answer)
        valid = True
    except ValueError:
        predicted, valid = None, False
    try:
        expected = parse_json_answer(reference)
    except ValueError:
        expected = reference
    schema_ok = valid and (schema is None or schema_problem(predicted, schema) is None)
    tp, n_pred, n_ref = field_scores(predicted, expected) if valid else (0, 0, len(flatten_fields(expected)))
    precision, recall, f1 = prf(tp, n_pred, n_ref)
    return {"json_valid": float(valid), "schema_valid": float(schema_ok), "field_f1": f1,
            "field_precision": precision, "field_recall": recall, "_counts": (tp, n_pred, n_ref)}


# ---------------------------------------------------------------- predictions

def public_scores(scores: dict) -> dict:
    """Per-example scores without internal fields, for predictions.jsonl."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items() if not k.startswith("_")}


# ---------------------------------------------------------------- gap closed

def gap_closed(teacher: float, base: float, tuned: float) -> Optional[float]:
    """(tuned − base) / (teacher − base); None when teacher and base score the same."""
    gap = teacher - base
    if abs(gap) < 1e-12:
        return None
    return (tuned - base) / gap


@dataclass(frozen=True)
class GapClosed:
    value: Optional[float]
    low: Optional[float]
    high: Optional[float]
    resamples: int
    valid_resamples: int
    seed: int
    note: str = ""

    def to_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "level": 0.95,
                "resamples": self.resamples, "valid_resamples": self.valid_resamples, "seed": self.seed,
                "note": self.note}


def _resampled_indices(n: int, resamples: int, seed: int):
    """The bootstrap's example indices, one row per resample: the same rows for every figure drawn with
    the same seed, so figures about one test set are paired."""
    import numpy as np
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_gap_closed(teacher: Sequence[float], base: Sequence[float], tuned: Sequence[float], *,
                         resamples: int = 1000, seed: int = 0, level: float = 0.95,
                         base_name: str = "base student") -> GapClosed:
    """The gap closed on the test set, and a percentile bootstrap interval from resampling examples
    (the same resampled examples for all three models). Resamples where teacher and base tie are
    skipped; the count of usable ones is reported. `base` may be any baseline (`base_name` in notes)."""
    import numpy as np
    t, b, s = (np.asarray(x, dtype=float) for x in (teacher, base, tuned))
    if not (len(t) == len(b) == len(s)):
        raise ValueError("teacher, base and tuned need one score per example each")
    n = len(t)
    value = gap_closed(t.mean(), b.mean(), s.mean()) if n else None
    note = ""
    if n == 0:
        return GapClosed(None, None, None, resamples, 0, seed, "no test examples")
    if value is None:
        note = f"teacher and {base_name} score the same, so there is no gap to close"
    elif t.mean() < b.mean():
        # A ratio over a negative gap reads as success when the student is simply below the baseline.
        return GapClosed(None, None, None, resamples, 0, seed,
                         f"the {base_name} scores above the teacher, so there is no gap to close")
    idx = _resampled_indices(n, resamples, seed)
    tm, bm, sm = t[idx].mean(axis=1), b[idx].mean(axis=1), s[idx].mean(axis=1)
    gap = tm - bm
    ok = np.abs(gap) > 1e-12
    values = (sm[ok] - bm[ok]) / gap[ok]
    if values.size < max(10, resamples // 10):
        return GapClosed(value, None, None, resamples, int(values.size), seed,
                         note or "too few resamples with a teacher–base gap for an interval")
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return GapClosed(value, float(low), float(high), resamples, int(values.size), seed, note)


@dataclass(frozen=True)
class Difference:
    value: Optional[float]
    low: Optional[float]
    high: Optional[float]
    resamples: int
    seed: int

    def to_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "level": 0.95,
                "resamples": self.resamples, "seed": self.seed}


def bootstrap_difference(a: Sequence[float], b: Sequence[float], *, resamples: int = 1000, seed: int = 0,
                         level: float = 0.95) -> Difference:
    """mean(a) − mean(b) over paired per-example scores, with a percentile bootstrap interval drawn from
    the same resampled examples as bootstrap_gap_closed."""
    import numpy as np
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y):
        raise ValueError("both models need one score per example")
    if not len(x):
        return Difference(None, None, None, resamples, seed)
    idx = _resampled_indices(len(x), resamples, seed)
    diffs = x[idx].mean(axis=1) - y[idx].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return Difference(float(x.mean() - y.mean()), float(low), float(high), resamples, seed)


# ---------------------------------------------------------------- judge

JUDGE_SCALE = 5


def judge_text(task_description: str, question: str, reference: str, answer: str) -> str:
    return (f"You grade answers. Task: {task_description.strip() or 'answer the input'}\n\n"
            f"Input: {' '.join(question.split())}\n"
            f"Reference answer: {' '.join(reference.split())}\n"
            f"Candidate answer: {' '.join(answer.split()) or '(empty)'}\n\n"
            f"How well does the candidate answer match the reference in meaning and correctness? "
            f"Reply with one number from 1 (wrong) to {JUDGE_SCALE} (fully correct).")


def judge_request(mode: str, task_description: str, question: str, reference: str, answer: str):
    """The teacher's grading request, in chat or few-shot completion mode."""
    from .prompts import Request
    body = judge_text(task_description, question, reference, answer)
    if mode == "chat":
        return Request("chat", messages=({"role": "user", "content": body},))
    shots = ("Input: What is the capital of France?\nReference answer: Paris\n"
             "Candidate answer: The capital is Paris.\nScore: 5\n\n"
             "Input: What is the capital of France?\nReference answer: Paris\n"
             "Candidate answer: Lyon\nScore: 1\n\n")
    prompt = (f"Grade each candidate answer against the reference from 1 (wrong) to {JUDGE_SCALE} "
              f"(fully correct).\n\n{shots}"
              f"Input: {' '.join(question.split())}\nReference answer: {' '.join(reference.split())}\n"
              f"Candidate answer: {' '.join(answer.split()) or '(empty)'}\nScore:")
    return Request("completion", prompt=prompt, stop=("\n",))


_JUDGE_NUMBER = re.compile(r"(?<![\d.])([1-9]\d*(?:\.\d+)?)\s*(?:/\s*(\d+)|out of\s*(\d+))?")


def parse_judge(text: str) -> Optional[float]:
    """The grade in a judge reply, scaled to [0, 1]; None when no grade 1..5 is found.
    Accepts "4", "Score: 4", "4/5", "4 out of 5", "**3**"."""
    for match in _JUDGE_NUMBER.finditer(text):
        value = float(match.group(1))
        scale = match.group(2) or match.group(3)
        if scale and float(scale) != JUDGE_SCALE:
            if float(scale) > 0 and value <= float(scale):
                return value / float(scale)
            continue
        if 1 <= value <= JUDGE_SCALE:
            return (value - 1) / (JUDGE_SCALE - 1)
    return None


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
