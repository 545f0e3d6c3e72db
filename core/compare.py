"""Reading an evaluation side by side: which answers are right, where the models disagree, which words
differ. Works on the records of runs/<id>/eval/predictions.jsonl (see core.evaluate)."""
from __future__ import annotations

import difflib
import re
from typing import Iterable

from .metrics import normalize_answer

RIGHT_AT = 0.5          # a per-example score at or above this counts as right (exact metrics are 0 or 1)

FILTERS = {
    "all": "all",
    "student-wrong": "student wrong",
    "teacher-right": "teacher right, student wrong",
    "disagree": "student and teacher disagree",
}


def is_right(row: dict, model: str) -> bool:
    out = row.get("outputs", {}).get(model) or {}
    return float(out.get("score") or 0.0) >= RIGHT_AT


def answer(row: dict, model: str) -> str:
    return (row.get("outputs", {}).get(model) or {}).get("text", "")


def disagree(row: dict, a: str = "tuned", b: str = "teacher") -> bool:
    return normalize_answer(answer(row, a)) != normalize_answer(answer(row, b))


def matches(row: dict, name: str) -> bool:
    if name == "all":
        return True
    if name == "student-wrong":
        return not is_right(row, "tuned")
    if name == "teacher-right":
        return is_right(row, "teacher") and not is_right(row, "tuned")
    if name == "disagree":
        return disagree(row)
    raise ValueError(f"unknown filter {name!r}; expected one of {', '.join(FILTERS)}")


def filter_rows(rows: Iterable[dict], name: str = "all", text: str = "") -> list[dict]:
    """The rows that pass filter `name` and contain `text` (case-insensitive) in the input, the
    reference or any answer."""
    needle = text.strip().lower()
    out = []
    for row in rows:
        if not matches(row, name):
            continue
        if needle:
            hay = " ".join([row.get("input", ""), row.get("reference", "")] +
                           [o.get("text", "") for o in row.get("outputs", {}).values()]).lower()
            if needle not in hay:
                continue
        out.append(row)
    return out


def counts(rows: list[dict]) -> dict:
    return {name: sum(1 for r in rows if matches(r, name)) for name in FILTERS}


_WORDS = re.compile(r"\s+|[^\s]+")


def word_diff(text: str, other: str) -> list[tuple[str, bool]]:
    """`text` cut into pieces, each marked True where it differs from `other` (word level, ignoring
    case); whitespace pieces are never marked."""
    pieces = _WORDS.findall(text)
    theirs = [w.lower() for w in _WORDS.findall(other) if not w.isspace()]
    words = [(i, p) for i, p in enumerate(pieces) if not p.isspace()]
    matcher = difflib.SequenceMatcher(a=[p.lower() for _, p in words], b=theirs, autojunk=False)
    same = set()
    for block in matcher.get_matching_blocks():
        for k in range(block.a, block.a + block.size):
            same.add(words[k][0])
    return [(p, not p.isspace() and i not in same) for i, p in enumerate(pieces)]
