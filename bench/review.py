"""Review latency: filtering and sorting 50,000 generated rows in the review screen's data layer.

Builds 50,000 realistic rows (kept, pruned and rejected; four labels; dup scores; tickets of varied
length), loads them into core.review.ReviewSet as the review screen does, and times each filter the
screen offers (status, label, reason, numeric, free text, combined) and the sorts its columns offer,
median of several runs each.

    python bench/review.py [--rows 50000]

Ends with: RATIOS review: worst_ms=<slowest median filter or sort> target_ms=100 ...
"""
from __future__ import annotations

import argparse
import random
import time

import _common  # noqa: F401
from _common import machine, median, ratios

FILTERS = ["", "status:kept", "label:billing", "reason:near-dup", "dup>0.5", "len<80", "refund",
           "status:kept label:shipping dup<0.3 parcel", '"charged twice"', "status:rejected reason:label-disagree"]
SORTS = {"dup": lambda e: e.dup, "length": lambda e: e.length, "label": lambda e: e.label,
         "text": lambda e: e.text.lower()}


def make_rows(n: int) -> list[dict]:
    rng = random.Random(0)
    words = ("refund invoice parcel tracking card courier charge box payment delivery receipt address "
             "coupon van login password account app crash error screen charged twice late lost").split()
    labels = ["billing", "shipping", "technical", "account"]
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        status = rng.choices(["kept", "pruned", "rejected"], [0.7, 0.1, 0.2])[0]
        reason = rng.choice(["near-dup", "label-disagree", "too-short", "exact-dup"]) if status == "rejected" else ""
        rows.append({"id": f"syn-{i:06d}", "status": status, "reason": reason,
                     "scores": {"dup": round(rng.random(), 3)}, "meta": {},
                     "messages": [{"role": "user", "content": text},
                                  {"role": "assistant", "content": rng.choice(labels)}]})
    return rows


CPU_MS: list = []


def timed(fn, repeat=7) -> float:
    """Median wall-clock ms; the median CPU ms of the same runs goes to CPU_MS (on a shared machine
    the wall clock includes waiting for a core)."""
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    CPU_MS.append(median(cpu) * 1000)
    return median(times) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50000)
    args = parser.parse_args()
    from stillroom.core.review import ReviewSet
    print(f"machine: {machine()}; rows: {args.rows}", flush=True)
    rows = make_rows(args.rows)
    start = time.perf_counter()
    review = ReviewSet(rows)
    print(f"load into ReviewSet: {(time.perf_counter() - start) * 1000:.0f} ms")
    worst = 0.0
    for text in FILTERS:
        ms = timed(lambda: review.filter(text))
        worst = max(worst, ms)
        print(f"filter {text or '(none)':45s} {len(review.filter(text)):6d} rows  {ms:7.1f} ms "
              f"(cpu {CPU_MS[-1]:.1f} ms)")
    shown = review.filter("status:kept")
    for name, key in SORTS.items():
        ms = timed(lambda: sorted(shown, key=lambda i: key(review.entries[i])))
        worst = max(worst, ms)
        print(f"sort kept rows by {name:8s} {len(shown):6d} rows  {ms:7.1f} ms (cpu {CPU_MS[-1]:.1f} ms)")
    both = timed(lambda: sorted(review.filter("label:billing dup<0.9"), key=lambda i: review.entries[i].dup,
                                reverse=True))
    worst = max(worst, both)
    print(f"filter label:billing dup<0.9 then sort by dup: {both:.1f} ms (cpu {CPU_MS[-1]:.1f} ms)")
    ratios("review", worst_ms=worst, worst_cpu_ms=max(CPU_MS), target_ms=100, worst_vs_target=worst / 100,
           worst_cpu_vs_target=max(CPU_MS) / 100)


if __name__ == "__main__":
    main()
