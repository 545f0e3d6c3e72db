"""Does targeting the student's mistakes beat more of the same rows?

    python bench/improve.py [--data ../shared/data/sst2] [--rows 40] [--extra 40] [--probe 40] [--rounds 1]
                            [--test 200] [--continue-too] [--out /tmp/improve-bench]

A classification project is made from the folder's seeds.csv and test.csv (columns text,label), with the
bundled teacher and student. The plain pipeline generates --rows rows, trains and evaluates (run A). The
project is then copied twice: one copy runs --rounds rounds of `improve` (--probe probe inputs and --extra
targeted rows a round, run B); the other generates the same number of extra rows the plain way, trains
and evaluates (run C). With --continue-too the first round's rows also train a run that continues A's
adapter instead of a fresh one (run D), to choose improve.retrain. Every evaluation is core.evaluate's,
on the same --test test rows; the table shows the test accuracy with its 95% bootstrap interval, the gap
closed with its interval, and B − C with a paired bootstrap interval over the same test rows.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (paths, offline hub)

from stillroom.core import records
from stillroom.core.config import TaskConfig
from stillroom.core.evaluate import evaluate, read_eval
from stillroom.core.generate import generate
from stillroom.core.improve import improve, test_summary
from stillroom.core.project import Project
from stillroom.core.train import train

TASKS = {
    "sst2": TaskConfig(name="sst2", type="classification", labels=["negative", "positive"],
                       description="Decide whether a movie review is positive or negative.",
                       system_prompt="Classify the sentiment of the movie review. Answer with exactly one "
                                     "label: negative or positive.",
                       input_name="Review", output_name="Sentiment"),
}


def make_project(root: Path, data: Path, test_rows: int, max_steps: int) -> Project:
    task = TASKS[data.name]
    seeds = records.import_file(data / "seeds.csv", fmt="csv", input_column="text", output_column="label")
    tests = records.import_file(data / "test.csv", fmt="csv", input_column="text", output_column="label")
    project = Project.create(root, "classification")
    config = project.config
    config.task = task
    # The demo's measured training settings for a short answer on a few dozen rows.
    config.training.learning_rate, config.training.batch_size, config.training.epochs = 1e-3, 4, 5.0
    config.training.max_steps = max_steps
    # Every written row keeps the teacher's label: on a shared 2-core machine, throwing away the rows
    # written for the other label costs more teacher time than the bench can spend.
    config.generation.agreement = False
    config.evaluation.max_examples = test_rows
    config.evaluation.baselines = []
    project.save_config(config)
    project.save_seeds(seeds)
    project.save_tests(tests)
    return Project.open(root)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def plain(project: Project, rows: int) -> str:
    """Generate to `rows` kept rows, train, evaluate; the run id."""
    generate(project, rows)
    result = train(project)
    evaluate(project, result.run_id)
    return result.run_id


def paired_difference(project_b: Project, run_b: str, project_c: Project, run_c: str, resamples: int = 2000):
    import numpy as np
    b = np.array([r["outputs"]["tuned"]["score"] for r in read_eval(project_b, run_b).records])
    c = np.array([r["outputs"]["tuned"]["score"] for r in read_eval(project_c, run_c).records])
    idx = np.random.default_rng(0).integers(0, len(b), size=(resamples, len(b)))
    diffs = b[idx].mean(axis=1) - c[idx].mean(axis=1)
    return float(b.mean() - c.mean()), *map(float, np.quantile(diffs, [0.025, 0.975]))


def row(name: str, project: Project, run_id: str, rows: int) -> str:
    s = test_summary(project, run_id)
    gap = s["gap_closed"]
    gap_text = "–" if gap.get("value") is None else (
        f"{gap['value']:.0%} [{gap['ci_low']:.0%}, {gap['ci_high']:.0%}]" if gap.get("ci_low") is not None
        else f"{gap['value']:.0%}")
    return (f"| {name} | {rows} | {s['tuned']:.3f} [{s['tuned_ci'][0]:.3f}, {s['tuned_ci'][1]:.3f}] | {gap_text} | "
            f"{s['teacher']:.3f} | {s['base']:.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_common.REPO.parent / "shared" / "data" / "sst2")
    parser.add_argument("--rows", type=int, default=40, help="generated rows of the plain pipeline")
    parser.add_argument("--extra", type=int, default=40, help="rows added per round, targeted or plain")
    parser.add_argument("--probe", type=int, default=40, help="probe inputs per round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--test", type=int, default=200, help="test rows evaluated (0 = all)")
    parser.add_argument("--max-steps", type=int, default=0, help="training steps per run (0 = 5 epochs)")
    parser.add_argument("--continue-too", action="store_true",
                        help="also train round 1's rows continuing run A's adapter (run D)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/stillroom-improve-bench"))
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    print(f"# improve vs more of the same: {args.data.name}, {_common.machine()}", flush=True)
    a = make_project(args.out / "a", args.data, args.test, args.max_steps)
    log("plain pipeline (run A)")
    run_a = plain(a, args.rows)
    shutil.copytree(a.root, args.out / "b")
    shutil.copytree(a.root, args.out / "c")
    b, c = Project.open(args.out / "b"), Project.open(args.out / "c")
    b.config.improve.probe, b.config.improve.rows = args.probe, args.extra
    b.save_config()

    lines = ["| run | generated rows | test accuracy [95% CI] | gap closed [95% CI] | teacher | base |",
             "|---|---:|---|---|---:|---:|", row("A: plain pipeline", a, run_a, args.rows)]
    print("\n".join(lines), flush=True)
    reports = []

    def add(line: str) -> None:
        lines.append(line)
        print(line, flush=True)
    for n in range(1, args.rounds + 1):
        log(f"improve round {n} (run B{n})")
        result = improve(b, rounds=n, on_event=lambda e: None)
        report = result.rounds[-1]
        reports.append(report)
        log(f"plain +{args.extra * n} rows (run C{n})")
        run_c = plain(c, args.rows + args.extra * n)
        add(row(f"B{n}: {n} improve round(s)", b, report["run"], args.rows + sum(
            r["rows_added"] for r in reports)))
        add(row(f"C{n}: plain, same extra rows", c, run_c, args.rows + args.extra * n))
        diff, low, high = paired_difference(b, report["run"], c, run_c)
        add(f"| B{n} − C{n} (paired) | | {diff:+.3f} [{low:+.3f}, {high:+.3f}] | | | |")
        if n == 1 and args.continue_too:
            log("round 1's rows, continuing run A's adapter (run D)")
            from stillroom.core.evaluate import run_weights
            shutil.copytree(b.root, args.out / "d")
            d = Project.open(args.out / "d")
            run_d = train(d, start_adapter=run_weights(d, run_a).adapter).run_id
            evaluate(d, run_d)
            add(row("D: round 1 rows, continue A's adapter", d, run_d,
                             args.rows + report["rows_added"]))
    print()
    print("\n".join(lines))
    for report in reports:
        p = report["probe"]
        print(f"round {report['round']}: probe disagreement {p['disagree_before']:.0%} → "
              f"{p['disagree_after']:.0%} of {p['size']}; rows added {report['rows_added']}; groups "
              + ", ".join(f"{g['key']} {g['size']}" for g in report["groups"]))
    (args.out / "reports.json").write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
