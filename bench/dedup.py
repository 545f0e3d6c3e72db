"""Flat-cost de-duplication: the generation engine's time per kept row at row 20,000 vs at row 200.

A fake, instant teacher writes distinct random tickets (and a share of near-copies of earlier ones),
so what is timed is Stillroom alone: prompt building, checks, the near-duplicate index (MinHash LSH
with exact Jaccard verification), the fsynced append and the events. The same index is then timed on
its own, next to the brute-force comparison it replaces.

    python bench/dedup.py [--rows 20000]

Ends with: RATIOS dedup: engine=<time per row near the end / near row 200> (target <= 1.2) ...
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401
from _common import machine, ratios


def vocabulary(n=3000, seed=1):
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(n)]


class InstantTeacher:
    """Answers at once; a new input is random words (every 10th a light edit of an earlier one)."""
    name = "instant"
    supports_chat = False
    is_base = True

    def __init__(self):
        self.words = vocabulary()
        self.written: list[str] = []

    def complete(self, prompt, params, on_token=None, cancel=None):
        from stillroom.core.backends.base import Completion
        if prompt.endswith("Answer:"):
            return Completion(" an answer", "stop", 0, 2, 0.0)
        rng = random.Random(params.seed)
        if self.written and rng.random() < 0.1:
            words = rng.choice(self.written).split()
            words[rng.randrange(len(words))] = rng.choice(self.words)
            text = " ".join(words)
        else:
            text = " ".join(rng.choice(self.words) for _ in range(rng.randint(8, 16)))
        self.written.append(text)
        return Completion(" " + text, "stop", 0, len(text.split()), 0.0)

    def chat(self, *a, **k):
        raise NotImplementedError

    def close(self):
        pass


def engine_times(rows: int, folder: Path) -> list[float]:
    from stillroom.core import events, records
    from stillroom.core.generate import generate
    from stillroom.core.project import Project
    project = Project.create(folder, "qa")
    project.config.task.input_name, project.config.task.output_name = "Question", "Answer"
    project.config.evaluation.test_fraction = 0.0
    project.save_config()
    words = vocabulary(seed=2)
    rng = random.Random(0)
    project.save_seeds([records.make_row(" ".join(rng.choice(words) for _ in range(10)), "an answer")
                        for _ in range(20)])
    stamps: list[float] = []

    def on_event(event):
        if isinstance(event, events.ExampleAccepted):
            stamps.append(time.perf_counter())
    result = generate(Project.open(project.root), rows, teacher=InstantTeacher(), on_event=on_event)
    print(f"engine: {result.kept} kept, {result.rejected} rejected "
          f"({', '.join(f'{k} {v}' for k, v in sorted(result.rejected_by_reason.items()))}) "
          f"in {result.elapsed:.1f} s", flush=True)
    return stamps


def per_row(stamps: list[float], at: int, window: int) -> float:
    lo, hi = max(1, at - window // 2), min(len(stamps) - 1, at + window // 2)
    return (stamps[hi] - stamps[lo]) / (hi - lo)


def index_times(n: int):
    """The index alone: seconds per lookup+insert near `small` and near `n`; brute force at n."""
    from stillroom.core.quality import NearDupIndex, shingles, jaccard
    words = vocabulary(seed=3)
    rng = random.Random(4)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 16))) for _ in range(n + 200)]
    index = NearDupIndex(0.8)
    marks = {}
    start = time.perf_counter()
    for i, text in enumerate(texts[:n]):
        if i in (100, 300, n - 200):
            marks[i] = time.perf_counter()
        index.nearest(text)
        index.add(text)
    marks[n] = time.perf_counter()
    small = (marks[300] - marks[100]) / 200
    large = (marks[n] - marks[n - 200]) / 200
    sets = [shingles(t) for t in texts[:n]]
    probe = shingles(texts[n])
    t0 = time.perf_counter()
    for _ in range(3):
        max(jaccard(probe, s) for s in sets)
    brute = (time.perf_counter() - t0) / 3
    return small, large, brute, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="stillroom-bench-")) / "dedup"
    stamps = engine_times(args.rows, folder)
    window = 200
    early = per_row(stamps, 200, window)
    late = per_row(stamps, len(stamps) - window // 2 - 1, window)
    mid = per_row(stamps, len(stamps) // 2, window)
    print(f"engine time per kept row: {early * 1e3:.2f} ms at row 200, {mid * 1e3:.2f} ms at row "
          f"{len(stamps) // 2}, {late * 1e3:.2f} ms at row {len(stamps)} (windows of {window} rows)")
    small, large, brute, _ = index_times(args.rows)
    print(f"index alone (lookup + insert): {small * 1e6:.0f} us at 200 rows, {large * 1e6:.0f} us at "
          f"{args.rows} rows; brute-force comparison against {args.rows} rows: {brute * 1e3:.1f} ms")
    ratios("dedup", engine=late / early, index=large / small, brute_vs_index=brute / large)


if __name__ == "__main__":
    main()
