"""Distillation quality on public labelled data: the README's quality table, from a clean clone.

For each dataset (the SST-2 and ATIS subsets in ../shared/data, and the demo project) a classification
project is made in the work folder, the bundled Gemma 3 270M teacher writes --rows kept rows, the
bundled SmolLM2-135M-Instruct student is trained once per objective in --objectives on those same rows
(training.objective), and every run is evaluated with every baseline (base zero-shot, base few-shot,
base scored, seed-only student). The table gives each model's accuracy with its 95% bootstrap
interval, and for each tuned student the gap closed against the base student (the headline), against
the best prompted baseline, and tuned − seed-only (what the generated rows added).

Everything is kept in the work folder, so a second run with the same folder reuses what is there:
generation continues to --rows kept rows, a finished run with the same objective and steps is not
trained again, and the seed-only student is cached per seed set (runs/_baselines/).

    python bench/quality.py                                   # all datasets, 200 rows, default steps
    python bench/quality.py --datasets sst2 --rows 40 --max-steps 30 --limit 100    # a few minutes

Prints the markdown table and writes it as JSON (--json, default <work>/quality.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401
from _common import Timer, machine

DATA = _common.REPO.parent / "shared" / "data"

DATASETS = {
    "sst2": {"name": "sst2-sentiment", "input_name": "Review", "output_name": "Sentiment",
             "description": "Classify the sentiment of a movie review sentence: positive or negative."},
    "atis": {"name": "atis-intent", "input_name": "Query", "output_name": "Intent",
             "description": "Route an airline-travel customer query to its intent: flight, airfare, airline, "
                            "ground_service, abbreviation, capacity, airport or distance."},
    "demo": {},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="sst2,atis,demo",
                        help=f"comma-separated, from {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--rows", type=int, default=200, help="kept generated rows per dataset (default 200)")
    parser.add_argument("--objectives", default="sft",
                        help="comma-separated training.objective values: sft, soft-labels, logits (default sft)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="training steps per run; 0 = the project's default (training.epochs)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N test rows; 0 = all")
    parser.add_argument("--teacher-threads", type=int, default=0,
                        help="teacher.n_threads for the projects (default: the project's, 0 = all cores); 1 "
                             "keeps llama.cpp from spinning on a machine that others are busy on")
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (kept; reuse it to resume); default: a new temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="where the JSON goes (default <work>/quality.json)")
    return parser.parse_args(argv)


def check_objectives(objectives: list[str]) -> None:
    from stillroom.core.config import TrainingConfig
    field = {f.name: f for f in dataclasses.fields(TrainingConfig)}.get("objective")
    allowed = field.metadata.get("choices", ()) if field is not None else ("sft",)
    for objective in objectives:
        if objective not in allowed:
            if field is None:
                sys.exit(f"--objectives: {objective!r} needs the training.objective setting, which this version "
                         f"does not have; only sft is available")
            sys.exit(f"--objectives: {objective!r} is not a training.objective; expected {', '.join(allowed)}")


# ---------------------------------------------------------------- projects

def open_or_create(name: str, root: Path, objectives: list[str], threads: int = 0):
    from stillroom.core.importing import create_from
    from stillroom.core.project import Project
    if (root / "stillroom.toml").exists():
        project = Project.open(root)
    elif name == "demo":
        project = Project.create(root, demo=True)
    else:
        folder = DATA / name
        if not (folder / "seeds.csv").exists():
            sys.exit(f"{folder / 'seeds.csv'}: not found; the quality data lives in ../shared/data (see its README)")
        spec = DATASETS[name]
        project, _ = create_from(root, folder / "seeds.csv", test=folder / "test.csv", task_type="classification",
                                 name=spec["name"], input_column="text", output_column="label")
        task = project.config.task
        task.description, task.input_name, task.output_name = (spec["description"], spec["input_name"],
                                                               spec["output_name"])
        project.save_config()
    if threads and project.config.teacher.n_threads != threads:
        project.config.teacher.n_threads = threads
        project.save_config()
    if "logits" in objectives and hasattr(project.config.generation, "teacher_logprobs"):
        if not project.config.generation.teacher_logprobs:
            project.config.generation.teacher_logprobs = 8
            project.save_config()
    return Project.open(root)


def finished_run(project, objective: str, max_steps: int):
    """A finished run of this objective and step setting on the current kept rows, if one is there."""
    from stillroom.core.runs import list_runs, read_json
    from stillroom.core.sft_data import data_hash
    for run in reversed(list_runs(project)):
        if run.status != "finished" or run.output_dir is None:
            continue
        info = read_json(run.path / "config.json") or {}
        training = info.get("config", {}).get("training", {})
        if training.get("objective", "sft") != objective or training.get("max_steps", 0) != max_steps:
            continue
        rows = project.training_rows()
        saved = info.get("data", {}).get("hash")
        if saved is None or saved == data_hash(rows) or _same_rows(run.path, rows):
            return run.run_id
    return None


def _same_rows(run_dir: Path, rows: list[dict]) -> bool:
    from stillroom.core import records
    saved = records.read_jsonl(run_dir / "data.jsonl", missing_ok=True)
    return sorted(json.dumps(r["messages"]) for r in saved) == sorted(json.dumps(r["messages"]) for r in rows)


# ---------------------------------------------------------------- one dataset

def progress(prefix: str):
    from stillroom.core import events
    last = {"at": 0.0}

    def on_event(event) -> None:
        now = time.monotonic()
        if isinstance(event, events.Status):
            print(f"  {prefix}: {event.message}", flush=True)
        elif now - last["at"] > 15 and isinstance(event, (events.EvalProgress, events.TrainStep,
                                                          events.GenerationProgress)):
            last["at"] = now
            if isinstance(event, events.EvalProgress):
                print(f"  {prefix}: {event.model} {event.done}/{event.total}", flush=True)
            elif isinstance(event, events.TrainStep):
                print(f"  {prefix}: step {event.step}/{event.max_steps}", flush=True)
            else:
                print(f"  {prefix}: kept {event.kept}/{event.target}, rejected {event.rejected}", flush=True)
    return on_event


def run_dataset(name: str, root: Path, args, objectives: list[str]) -> dict:
    from stillroom.core.backends import load_teacher
    from stillroom.core.evaluate import evaluate
    from stillroom.core.generate import generate
    from stillroom.core.train import train
    project = open_or_create(name, root, objectives, args.teacher_threads)
    print(f"{name}: {len(project.seeds())} seeds, {len(project.tests())} test rows, labels "
          f"{', '.join(project.config.task.labels)}", flush=True)
    teacher = load_teacher(project)
    out = {"dataset": name, "project": str(root), "labels": list(project.config.task.labels), "runs": []}
    try:
        with Timer() as gen_time:
            result = generate(project, args.rows, teacher=teacher, on_event=progress(f"{name} generate"))
        out["generation"] = {"kept": len(project.kept_rows()), "rejected_this_time": result.rejected,
                             "rejected_by_reason": result.rejected_by_reason, "seconds": round(gen_time.seconds, 1)}
        print(f"{name}: {len(project.kept_rows())} kept rows ({gen_time.seconds:.0f} s this time)", flush=True)
        for objective in objectives:
            run_id = finished_run(project, objective, args.max_steps)
            if run_id is None:
                overrides = {"objective": objective} if objective != "sft" else {}
                if args.max_steps:
                    overrides["max_steps"] = args.max_steps
                with Timer() as train_time:
                    trained = train(project, overrides=overrides or None, on_event=progress(f"{name} {objective}"))
                if trained.cancelled or trained.output_dir is None:
                    sys.exit(f"{name}: training with objective {objective} did not finish")
                run_id = trained.run_id
                print(f"{name} {objective}: run {run_id}, {trained.step} steps in {train_time.seconds:.0f} s",
                      flush=True)
            with Timer() as eval_time:
                evaluated = evaluate(project, run_id, teacher=teacher, limit=args.limit or None,
                                     on_event=progress(f"{name} eval {objective}"))
            print(f"{name} {objective}: evaluated in {eval_time.seconds:.0f} s", flush=True)
            out["runs"].append(summarise(objective, evaluated, eval_time.seconds))
    finally:
        teacher.close()
    return out


def summarise(objective: str, evaluated, seconds: float) -> dict:
    """Each model's headline score with its 95% interval, and the three gap figures."""
    from stillroom.core import metrics
    m = evaluated.metrics
    cfg_seed, resamples = 0, 1000
    models = {}
    for key, values in m["models"].items():
        scores = [r["outputs"][key]["score"] for r in evaluated.records]
        mean = metrics.bootstrap_difference(scores, [0.0] * len(scores), resamples=resamples, seed=cfg_seed)
        models[key] = {"name": values.get("name"), "mode": values.get("mode"), "score": mean.value,
                       "ci_low": mean.low, "ci_high": mean.high,
                       "seconds_per_answer": values.get("seconds_per_answer")}
    return {"objective": objective, "run": m["run"], "n": m["n"], "metric": m["headline"], "models": models,
            "gap_closed": m["gap_closed"], "gap_closed_vs_prompted": m.get("gap_closed_vs_prompted"),
            "tuned_minus_prompted": m.get("tuned_minus_prompted"), "rows_added": m.get("rows_added"), "skipped_baselines": m.get("skipped_baselines", {}),
            "eval_seconds": round(seconds, 1)}


# ---------------------------------------------------------------- the table

def _ci(low, high, fmt) -> str:
    return f" [{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else ""


def _score(entry: dict) -> str:
    return f"{entry['score']:.3f}{_ci(entry['ci_low'], entry['ci_high'], lambda v: f'{v:.3f}')}"


def _pct(figure) -> str:
    if not figure or figure.get("value") is None:
        return "–"
    return f"{figure['value'] * 100:.0f}%{_ci(figure.get('ci_low'), figure.get('ci_high'), lambda v: f'{v * 100:.0f}%')}"


def _diff(figure) -> str:
    if not figure or figure.get("value") is None:
        return "–"
    return f"{figure['value']:+.3f}{_ci(figure.get('ci_low'), figure.get('ci_high'), lambda v: f'{v:+.3f}')}"


def table(results: list[dict]) -> str:
    from stillroom.core.evaluate import COLUMNS, TITLES
    lines = ["| dataset | model / objective | accuracy [95% CI] | gap closed vs base | vs best prompted | "
             "tuned − best prompted | tuned − seed-only |", "|---|---|---:|---:|---:|---:|---:|"]
    for data in results:
        if not data["runs"]:
            continue
        first = data["runs"][0]
        label = f"{data['dataset']} (n={first['n']})"
        for key in COLUMNS:
            if key == "tuned" or key not in first["models"]:
                continue
            lines.append(f"| {label} | {TITLES[key]} | {_score(first['models'][key])} | | | | |")
        for run in data["runs"]:
            best = (run.get("gap_closed_vs_prompted") or {}).get("baseline")
            lines.append(f"| {label} | tuned student, {run['objective']} | {_score(run['models']['tuned'])} | "
                         f"{_pct(run['gap_closed'])} | {_pct(run.get('gap_closed_vs_prompted'))}"
                         f"{f' ({TITLES.get(best, best)})' if best else ''} | {_diff(run.get('tuned_minus_prompted'))} | "
                         f"{_diff(run.get('rows_added'))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        sys.exit(f"--datasets: unknown {', '.join(unknown)}; expected {', '.join(DATASETS)}")
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    check_objectives(objectives)
    work = args.work or Path(tempfile.mkdtemp(prefix="stillroom-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"quality: {', '.join(names)}; {args.rows} rows; objectives {', '.join(objectives)}; steps "
          f"{args.max_steps or 'default'}; work folder {work}; {machine()}", flush=True)
    results = []
    with Timer() as total:
        for name in names:
            results.append(run_dataset(name, work / name, args, objectives))
    text = table(results)
    print()
    print(text)
    report = {"rows": args.rows, "max_steps": args.max_steps, "limit": args.limit, "objectives": objectives,
              "seconds": round(total.seconds, 1), "machine": machine(), "results": results, "table": text}
    target = args.json or work / "quality.json"
    target.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {target} ({total.seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
