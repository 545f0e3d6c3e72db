"""The seed-only student: the student trained on the seeds alone, with the step count, hyperparameters and
seed of the run it is compared with, so "tuned − seed-only" is what the generated rows added.

It is trained by core.train like any run, in runs/_baselines/<key>/ (not a run of the project), where
<key> hashes the seed rows, the training settings and the student. A second evaluation with the same
seeds and settings reuses the finished run; a stopped one resumes from its checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path
from typing import Optional

from . import records
from .config import ProjectConfig, parse_config
from .errors import Cancelled, StillroomError
from .events import EventSink, Status, ignore
from .project import Project, text_id
from .runs import _config_toml, list_runs, read_json

BASELINES_DIR = "_baselines"


class SeedOnlyProject(Project):
    """The project as training sees it for the seed-only student: its seeds as the only rows, the run's
    settings, and its own runs folder."""

    def __init__(self, root: Path, config: ProjectConfig, runs_dir: Path, rows: list[dict]):
        super().__init__(root, config)
        self._runs_dir = runs_dir
        self._rows = rows

    @property
    def runs_dir(self) -> Path:
        return self._runs_dir

    def training_rows(self) -> list[dict]:
        return [{"messages": r["messages"]} for r in self._rows]


def run_steps(run_dir: Path) -> Optional[int]:
    """The optimizer steps a run actually took (state.json), else the steps it planned (config.json)."""
    state = read_json(run_dir / "state.json") or {}
    config = read_json(run_dir / "config.json") or {}
    for value in (state.get("step"), config.get("max_steps")):
        if isinstance(value, int) and value > 0:
            return value
    return None


def seed_only_config(project: Project, run_dir: Path, steps: int) -> ProjectConfig:
    """The run's own settings (the project's when it kept none), trained for `steps` steps on the seeds."""
    saved = (read_json(run_dir / "config.json") or {}).get("config")
    config = project.config
    if isinstance(saved, dict):
        try:
            config = parse_config(_config_toml(saved), run_dir / "config.json")
        except (StillroomError, TypeError, KeyError):
            config = project.config
    # Seeds carry no teacher distribution to distil: the seed-only student learns their answers.
    training = dataclasses.replace(config.training, max_steps=steps, include_seeds=True, objective="sft")
    return dataclasses.replace(config, training=training)


def seed_rows(project: Project, tests: list[dict]) -> list[dict]:
    """The seeds a user starts from, less any that is also a test row."""
    held = {text_id(records.user_text(r)) for r in list(project.tests()) + list(tests)}
    return [r for r in project.seeds() if text_id(records.user_text(r)) not in held]


def cache_key(config: ProjectConfig, rows: list[dict]) -> str:
    body = {"rows": [r["messages"] for r in rows], "training": dataclasses.asdict(config.training),
            "student": dataclasses.asdict(config.student)}
    return hashlib.sha1(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def seed_only_run(project: Project, run_dir: Path, tests: list[dict], *, on_event: EventSink = ignore,
                  cancel: Optional[threading.Event] = None) -> Path:
    """The folder of the finished seed-only run for `run_dir`: cached, resumed, or trained now."""
    steps = run_steps(run_dir)
    if steps is None:
        raise StillroomError(f"{run_dir}: the run records no step count, so a seed-only student cannot "
                             f"be given the same budget")
    rows = seed_rows(project, tests)
    if not rows:
        raise StillroomError(f"{project.seeds_path}: no seeds outside the test rows to train on")
    config = seed_only_config(project, run_dir, steps)
    view = SeedOnlyProject(project.root, config, project.runs_dir / BASELINES_DIR / cache_key(config, rows),
                           rows)
    runs = list_runs(view)
    done = [r for r in runs if r.status == "finished" and r.output_dir is not None]
    if done:
        on_event(Status(f"seed-only student: cached run {done[-1].run_id}"))
        return done[-1].path
    resumable = [r for r in runs if r.resumable]
    from .train import train
    on_event(Status(f"training the seed-only student ({len(rows)} seeds, {steps} steps)"))
    result = train(view, on_event=on_event, cancel=cancel,
                   resume=resumable[-1].run_id if resumable else None)
    if result.cancelled or result.output_dir is None:
        raise Cancelled("evaluation stopped (the seed-only student resumes from its checkpoint next time)")
    return result.run_dir
