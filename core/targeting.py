"""The two kinds of generation the improve loop adds to core.generate's Generator.

* ProbeGenerator writes a round's probe: fresh inputs labelled by the teacher, appended to the round's
  own probe.jsonl instead of data/synthetic.jsonl, with a seed of its own (so it never repeats the
  training rows' prompts) and de-duplicated against everything: seeds, test rows, every generated row
  and every earlier probe.
* TargetedGenerator appends training rows to data/synthetic.jsonl around a round's mistakes: each
  candidate belongs to one mistake group, shown that group's disagreeing inputs (with the teacher's
  answers) as few-shot examples; for classification the labels asked for follow the confusions. Every
  row passes the usual checks and de-duplication (probes included) and its meta records
  {"improve": {"round": N, "group": KEY, "chain": RUN}} (RUN: the run the chain started from).

Both keep the Generator's guarantees: rows committed in index order, a resumed run continues exactly, and
every choice depends only on the seed and the row's index.
"""
from __future__ import annotations

import copy
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from . import records
from .generate import Generator
from .mistakes import Group
from .project import Project, text_id
from .quality import NearDupIndex


class ProbeProject(Project):
    """The project as a Generator sees it, with generated rows going to `path` and a generation seed
    of the probe's own."""

    def __init__(self, project: Project, path: Path, seed: int):
        config = copy.deepcopy(project.config)
        config.generation.seed = seed
        super().__init__(project.root, config)
        self._path = Path(path)

    @property
    def synthetic_path(self) -> Path:
        return self._path


def probe_rows(paths: Sequence[Path]) -> list[dict]:
    """The kept rows of probe files (missing files are empty)."""
    out = []
    for path in paths:
        out += [r for r in records.read_jsonl(path, generated=True, missing_ok=True) if r.get("status") == "kept"]
    return out


class _IndexesEverything(Generator):
    """De-duplicates against the extra rows it is given as well (other probes, or the training rows)."""

    extra: Sequence[tuple[str, dict]] = ()       # (key prefix, row)

    def _index(self, rows: list[dict]) -> NearDupIndex:
        index = super()._index(rows)
        for prefix, row in self.extra:
            index.add(records.user_text(row), f"{prefix}:{text_id(records.user_text(row))}")
        return index


class ProbeGenerator(_IndexesEverything):
    def __init__(self, project: Project, teacher, *, path: Path, seed: int, avoid: Sequence[dict], **kwargs):
        """`avoid`: rows the probe must not repeat beyond the seeds and test rows (every generated row
        and earlier probe)."""
        super().__init__(ProbeProject(project, path, seed), teacher, **kwargs)
        self.extra = [("avoid", row) for row in avoid]


class TargetedGenerator(_IndexesEverything):
    """Fills data/synthetic.jsonl to `kept_before + sum(plan)` kept rows, aimed at `groups`.

    plan: group key -> rows wanted; base_labels: the kept rows' label counts before this round's targeting
    (so the label balance is measured on this round's rows only)."""

    def __init__(self, project: Project, teacher, *, round_no: int, chain: str, groups: Sequence[Group],
                 plan: dict, base_labels: dict, avoid: Sequence[dict], **kwargs):
        super().__init__(project, teacher, **kwargs)
        self.round_no = round_no
        self.chain = chain
        self.groups = {g.key: g for g in groups if plan.get(g.key)}
        self.plan = {key: n for key, n in plan.items() if key in self.groups}
        self.label_targets = Counter()
        for key, n in self.plan.items():
            if self.groups[key].teacher:
                self.label_targets[self.groups[key].teacher] += n
        self.base_labels = Counter(base_labels)
        self.extra = [("probe", row) for row in avoid]
        self._local = threading.local()       # the candidate a worker thread is writing

    # ------------------------------------------------------------ the group of a candidate
    def group_for(self, index_no: int, label: Optional[str]) -> Group:
        """The group candidate `index_no` is aimed at: among the groups of its label (all groups when the
        task has no labels), drawn by their planned shares."""
        keys = [k for k in sorted(self.plan) if not label or self.groups[k].teacher == label] or sorted(self.plan)
        rng = random.Random(f"improve:{self.config.generation.seed}:{self.round_no}:{index_no}")
        return self.groups[rng.choices(keys, weights=[self.plan[k] for k in keys])[0]]

    def _choose_label(self, counts: Counter, index_no: int) -> Optional[str]:
        """The label furthest below its share of this round's rows (the shares follow the confusions)."""
        if not self.label_targets:
            return super()._choose_label(counts, index_no)
        deficit = {label: target - (counts.get(label, 0) - self.base_labels.get(label, 0))
                   for label, target in self.label_targets.items()}
        most = max(deficit.values())
        tied = sorted(label for label, d in deficit.items() if d == most)
        return random.Random(f"improve-label:{self.config.generation.seed}:{index_no}").choice(tied)

    def candidate(self, index_no: int, label: Optional[str], dedup: NearDupIndex, announce: bool = True) -> dict:
        self._local.group = self.group_for(index_no, label)
        row = super().candidate(index_no, label, dedup, announce)
        row["meta"]["improve"] = {"round": self.round_no, "group": self._local.group.key, "chain": self.chain}
        return row

    def _input_shots(self, group: int, rng: random.Random, label: Optional[str]) -> list[dict]:
        """The group's disagreeing inputs (with the teacher's answers), last, where the teacher writes
        on from; a seed with the same answer and, for a confusion, one with the student's wrong answer
        first, so the teacher sees what the answer is not."""
        mistakes = self._local.group
        k = min(self.config.generation.few_shot, len(self.seeds) + mistakes.size)
        shown = rng.sample(mistakes.rows, min(mistakes.size, max(1, k - 2)))
        same = [r for r in self.seeds if not label or records.answer_text(r) == label]
        other = [r for r in self.seeds if mistakes.student and records.answer_text(r) == mistakes.student]
        context = rng.sample(same, min(1, len(same))) + rng.sample(other, min(1, len(other)))
        fill = [r for r in self.seeds if not any(r is c for c in context)]
        context += rng.sample(fill, max(0, min(len(fill), k - len(shown) - len(context))))
        return context + shown
