"""What a set of example answers says about its task: the task kind, the labels, an extraction schema.

    guess = guess_kind(answers)      # Guess(kind=Classification(labels=("negative", "positive")), reason=...)

The rule, in order:
- every answer is a JSON object: extraction (the schema lists the keys and their JSON types);
- the answers look like labels and repeat (at least two distinct short one-line answers, at most
  MAX_LABELS of them, each used twice on average): classification, labels in order of first appearance;
- short free answers (median at most QA_MAX_WORDS words): qa, scored by token F1, which suits short
  answers; longer ones: generation, scored by ROUGE-L.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Sequence

from .quality import parse_json_answer
from .tasks import QA, Classification, Extraction, Generation, TaskKind

PLACEHOLDER_LABELS = tuple(Classification.defaults["labels"])   # what a new classification project starts with
MAX_LABELS = 50            # more distinct answers than this are not a label set anyone configures by hand
LABEL_MAX_WORDS = 3
LABEL_MAX_CHARS = 40
QA_MAX_WORDS = 12


@dataclass(frozen=True)
class Guess:
    kind: TaskKind         # bound to the labels or schema the answers gave
    reason: str            # a phrase saying why, e.g. "2 distinct short answers in 20 rows"


def has_placeholder_labels(task) -> bool:
    """True for a classification task whose labels are still the ones a new project starts with."""
    return Classification.name == task.type and tuple(task.labels) == PLACEHOLDER_LABELS


def labels_from_answers(answers: Sequence[str]) -> list[str]:
    """The distinct answers in order of first appearance: the order of the file the user wrote (seeds
    are usually balanced, so counting would order them by chance)."""
    return list(dict.fromkeys(a.strip() for a in answers if a.strip()))


def label_shaped(answer: str) -> bool:
    """A short single line, as a label is."""
    answer = answer.strip()
    return "\n" not in answer and len(answer) <= LABEL_MAX_CHARS and len(answer.split()) <= LABEL_MAX_WORDS


def could_be_labels(answers: Sequence[str]) -> bool:
    """At least two distinct answers, not too many, each a short single line."""
    distinct = labels_from_answers(answers)
    return 2 <= len(distinct) <= MAX_LABELS and all(label_shaped(a) for a in distinct)


def guess_kind(answers: Sequence[str]) -> Guess:
    """The task kind the answers suggest (see the module's rule)."""
    answers = [a.strip() for a in answers if a.strip()]
    n = len(answers)
    objects = _json_objects(answers)
    if n and objects is not None:
        return Guess(Extraction(json_schema=json.dumps(schema_of(objects))),
                     f"all {n} answers are JSON objects")
    distinct = len(set(answers))
    if could_be_labels(answers) and distinct * 2 <= n:
        return Guess(Classification(labels=tuple(labels_from_answers(answers))),
                     f"{distinct} distinct short answers in {n} rows")
    words = statistics.median(len(a.split()) for a in answers) if answers else 0
    reason = f"free answers, {words:g} word{'' if words == 1 else 's'} at the median"
    return Guess(QA() if n and words <= QA_MAX_WORDS else Generation(), reason)


def _json_objects(answers: Sequence[str]) -> list[dict] | None:
    objects = []
    for answer in answers:
        try:
            value = parse_json_answer(answer)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        objects.append(value)
    return objects


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
               (dict, "object"), (type(None), "null"))


def schema_of(objects: Sequence[dict]) -> dict:
    """A JSON schema the objects all match: every key with the JSON type(s) its values have, and the keys
    every object has as required."""
    types: dict[str, list[str]] = {}
    for obj in objects:
        for key, value in obj.items():
            name = next(name for tp, name in _JSON_TYPES if isinstance(value, tp))
            seen = types.setdefault(key, [])
            if name not in seen:
                seen.append(name)
    properties = {}
    for key, names in types.items():
        if "number" in names and "integer" in names:
            names = [n for n in names if n != "integer"]
        properties[key] = {"type": names[0] if len(names) == 1 else names}
    required = [key for key in types if all(key in obj for obj in objects)]
    return {"type": "object", "properties": properties, "required": required}
