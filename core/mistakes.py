"""Where a tuned student disagrees with its teacher, grouped so that rows can be aimed at each group.

A probe row holds the teacher's answer; the student answers the same input. Classification groups the
disagreements by confusion pair (teacher label → student label); the other kinds group them by the
character 3-gram similarity the de-duplication uses, each input joining the first group whose first
input it resembles. `allocate` shares a number of new rows between the groups by their sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from . import records
from .quality import jaccard, shingles
from .tasks import TaskKind

UNPARSEABLE = "unparseable"      # the student's answer named no label
SIMILAR_AT = 0.25                # 3-gram Jaccard at which two free-text mistakes share a group


@dataclass
class Group:
    key: str                     # "billing->shipping", or "similar-3"
    teacher: str = ""            # classification: the teacher's label (the label new rows are written for)
    student: str = ""            # classification: the student's answer (a label, or UNPARSEABLE)
    rows: list = field(default_factory=list)       # the probe rows (with the teacher's answer)
    answers: list = field(default_factory=list)    # the student's answers, one per row

    @property
    def size(self) -> int:
        return len(self.rows)

    def summary(self, examples: int = 3) -> dict:
        return {"key": self.key, "size": self.size, "teacher": self.teacher, "student": self.student,
                "examples": [{"input": records.one_line(records.user_text(r), 160),
                              "teacher": records.one_line(records.answer_text(r), 80),
                              "student": records.one_line(a, 80)}
                             for r, a in zip(self.rows[:examples], self.answers[:examples])]}


def headline_for(kind: TaskKind, configured: str) -> str:
    """The per-example score disagreement is measured on: the evaluation's headline, unless that needs
    a judge (a probe has no reference of its own to judge against)."""
    name = kind.headline_metric(configured)
    return name if name in kind.per_example else kind.headline


def disagrees(kind: TaskKind, answer: str, teacher_answer: str, headline: str, below: float) -> bool:
    score = kind.score_example(answer, teacher_answer)
    if kind.label_set:
        return score["accuracy"] < 1.0
    return float(score[headline]) < below


def group_mistakes(kind: TaskKind, rows: Sequence[dict], answers: Sequence[str], *, headline: str,
                   below: float) -> list[Group]:
    """The disagreements among `rows` (probe rows) and the student's `answers`, grouped, largest first
    (ties by key, so the order never depends on anything but the rows)."""
    wrong = [(row, answer) for row, answer in zip(rows, answers)
             if disagrees(kind, answer, records.answer_text(row), headline, below)]
    groups = _by_confusion(kind, wrong) if kind.label_set else _by_similarity(wrong)
    return sorted(groups, key=lambda g: (-g.size, g.key))


def _by_confusion(kind: TaskKind, wrong) -> list[Group]:
    groups: dict[str, Group] = {}
    for row, answer in wrong:
        teacher = records.answer_text(row)
        student = kind.score_example(answer, teacher)["label"] or UNPARSEABLE
        key = f"{teacher}->{student}"
        group = groups.setdefault(key, Group(key, teacher, student))
        group.rows.append(row)
        group.answers.append(answer)
    return list(groups.values())


def _by_similarity(wrong, threshold: float = SIMILAR_AT) -> list[Group]:
    groups: list[tuple[frozenset, Group]] = []
    for row, answer in wrong:
        grams = shingles(records.user_text(row))
        home: Optional[Group] = next((g for first, g in groups if jaccard(grams, first) >= threshold), None)
        if home is None:
            home = Group(f"similar-{len(groups) + 1}")
            groups.append((grams, home))
        home.rows.append(row)
        home.answers.append(answer)
    return [g for _, g in groups]


def allocate(groups: Sequence[Group], total: int) -> dict[str, int]:
    """`total` new rows shared between the groups in proportion to their sizes (largest remainders
    first, ties by order), so the new rows' balance follows the mistakes."""
    sizes = {g.key: g.size for g in groups if g.size}
    whole = sum(sizes.values())
    if not whole or total < 1:
        return {}
    shares = {key: total * size / whole for key, size in sizes.items()}
    out = {key: int(share) for key, share in shares.items()}
    order = sorted(sizes, key=lambda key: -(shares[key] - out[key]))
    for key in order[:total - sum(out.values())]:
        out[key] += 1
    return {key: n for key, n in out.items() if n}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[Optional[float], Optional[float]]:
    """The 95% Wilson score interval of a proportion (None, None without observations)."""
    if n == 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
