"""Training runs on disk: one folder per run, its files, listing, checkpoints, the run to resume, and the
evaluation headline of a run.

    runs/<run-id>/
      config.json      the resolved project config, overrides, data hash and counts, device, precision
      data.jsonl       the exact rows of this run, each tagged train / validation (resume reuses them)
      state.json       status (running, stopped, finished, failed), step, final losses; rewritten atomically
      metrics.jsonl    one line per logging step: step, epoch, loss, eval_loss, learning_rate,
                       tokens_per_second, elapsed, peak_memory_mb, tokens_seen
      checkpoints/     transformers checkpoints (weights, optimizer, scheduler, RNG), the newest few
      adapter/         the final LoRA adapter (PEFT, safetensors) with the tokenizer   (method = lora)
      model/           the final full model (safetensors) with the tokenizer            (method = full)
      eval/            metrics.json, predictions.jsonl, report.md                       (core.evaluate)

Nothing here imports torch or transformers.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import records
from .config import ProjectConfig, parse_config, render_toml
from .errors import StillroomError
from .fsio import JsonlAppender, atomic_write_jsonl, atomic_write_text, repair_torn_tail
from .lock import process_alive

CHECKPOINT_PREFIX = "checkpoint-"


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str                  # running | stopped | interrupted | finished | failed | unknown
    step: int
    max_steps: int
    final_loss: float | None
    final_eval_loss: float | None
    created: str                 # ISO 8601, UTC
    method: str
    path: Path
    output_dir: Path | None
    objective: str = "sft"       # training.objective the run learned with

    @property
    def resumable(self) -> bool:
        return self.status in ("stopped", "interrupted", "failed")

    @property
    def evaluated(self) -> bool:
        return (self.path / "eval" / "metrics.json").exists()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- a new run

def new_run_id(runs_dir: Path, method: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{method}"
    n = 2
    while (runs_dir / run_id).exists():
        run_id = f"{stamp}-{method}-{n}"
        n += 1
    return run_id


def write_new_run(run_dir: Path, train_rows: list[dict], validation_rows: list[dict], info: dict) -> None:
    """A new run's rows (data.jsonl), its description (config.json: `info`) and an empty metrics.jsonl.
    config.json is written before state.json: a folder with the one but not the other resumes at 0."""
    atomic_write_jsonl(run_dir / "data.jsonl", [{"split": "train", **r} for r in train_rows]
                       + [{"split": "validation", **r} for r in validation_rows])
    atomic_write_text(run_dir / "config.json", json.dumps(info, indent=1) + "\n")
    (run_dir / "metrics.jsonl").touch()


# ---------------------------------------------------------------- checkpoints and metrics

def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (its trainer_state.json is written last)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        if path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX):
            try:
                step = int(path.name[len(CHECKPOINT_PREFIX):])
            except ValueError:
                continue
            if read_json(path / "trainer_state.json") is not None:
                found.append((step, path))
    return max(found)[1] if found else None


def checkpoint_step(path: Path | None) -> int:
    return int(path.name[len(CHECKPOINT_PREFIX):]) if path else 0


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text("utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def truncate_metrics(run_dir: Path, step: int) -> list[dict]:
    """Keep the lines up to `step` (the checkpoint a resumed run continues from)."""
    path = run_dir / "metrics.jsonl"
    repair_torn_tail(path)
    kept = [m for m in read_metrics(run_dir) if m.get("step", 0) <= step]
    atomic_write_jsonl(path, kept)
    return kept


class RunWriter:
    """A run's state.json and metrics.jsonl; every method is a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, active: bool):
        self.run_dir = run_dir
        self.active = active
        self.metrics = None
        self.state: dict = {}

    def open_metrics(self):
        if self.active:
            self.metrics = JsonlAppender(self.run_dir / "metrics.jsonl")

    def metric(self, line: dict) -> None:
        if self.metrics is not None:
            self.metrics.append(line)

    def set_state(self, **values) -> None:
        self.state.update(values, updated=now_iso())
        if self.active:
            atomic_write_text(self.run_dir / "state.json", json.dumps(self.state, indent=1) + "\n")

    def close(self):
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None


# ---------------------------------------------------------------- listing

def _run_status(state: dict) -> str:
    status = state.get("status", "unknown")
    if status == "running" and not process_alive(int(state.get("pid", 0) or 0), state.get("host", "")):
        return "interrupted"
    return status


def list_runs(project) -> list[RunSummary]:
    """Every run of the project, oldest first."""
    out = []
    for run_dir in project.run_dirs():
        config = read_json(run_dir / "config.json") or {}
        state = read_json(run_dir / "state.json") or {}
        if not config and not state:
            continue
        method = config.get("method") or config.get("config", {}).get("training", {}).get("method", "")
        output = run_dir / ("model" if method == "full" else "adapter")
        # config.json is written (atomically) before state.json: a run with the one but not the other
        # was stopped before its first state line, and resumes from step 0.
        status = _run_status(state) if state else ("interrupted" if config.get("config") else "unknown")
        step = state.get("step")
        if step is None:
            step = checkpoint_step(last_checkpoint(run_dir))
        out.append(RunSummary(
            run_id=run_dir.name, status=status, step=int(step or 0),
            max_steps=int(state.get("max_steps") or config.get("max_steps") or 0),
            final_loss=state.get("final_loss"), final_eval_loss=state.get("final_eval_loss"),
            created=config.get("created") or state.get("started") or "", method=method, path=run_dir,
            output_dir=output if output.is_dir() else None, objective=run_objective(config)))
    return out


def run_objective(config: dict) -> str:
    """The training objective a run's config.json records (runs from before the setting: sft)."""
    return (config.get("config") or {}).get("training", {}).get("objective") or "sft"


# ---------------------------------------------------------------- resuming

def pick_resume(project, resume) -> Path | None:
    """The folder of the run to resume: None/False none, True/"" the newest stopped or interrupted run,
    else the run with that id. A finished or still running run is an error."""
    if resume is None or resume is False:
        return None
    if resume is True or resume == "":
        runs = [r for r in list_runs(project) if r.resumable or r.status == "running"]
        if not runs:
            raise StillroomError(f"{project.runs_dir}: no stopped or interrupted run to resume",
                                 f"start a new run with: stillroom train {project.root}")
        run = runs[-1]
    else:
        run_dir = project.run_dir(str(resume))
        matches = [r for r in list_runs(project) if r.path == run_dir]
        if not matches:
            raise StillroomError(f"{run_dir}: not a training run (no config.json)")
        run = matches[0]
    if run.status == "finished":
        raise StillroomError(f"{run.path}: run {run.run_id} already finished at step {run.step}",
                             "start a new run instead of resuming")
    if run.status == "running":
        raise StillroomError(f"{run.path}: run {run.run_id} is still running in another process")
    return run.path


def read_run_inputs(run_dir: Path) -> tuple[ProjectConfig, list[dict], list[dict]]:
    """The settings and the (train, validation) rows a run started with, for resuming it."""
    saved = read_json(run_dir / "config.json")
    if not saved or "config" not in saved:
        raise StillroomError(f"{run_dir / 'config.json'}: missing or unreadable; cannot resume this run")
    config = parse_config(_config_toml(saved["config"]), run_dir / "config.json")
    data_rows = records.read_jsonl(run_dir / "data.jsonl")
    rows = {"train": [], "validation": []}
    for row in data_rows:            # a row as written: messages, and a generated row's id and scores
        if row.get("split") in rows:
            rows[row["split"]].append({k: v for k, v in row.items() if k != "split"})
    train_rows, validation_rows = rows["train"], rows["validation"]
    return config, train_rows, validation_rows


def _config_toml(saved: dict) -> str:
    """A saved config dict back to TOML text (through the dataclasses, so it is validated again)."""
    sections = {}
    for f in dataclasses.fields(ProjectConfig):
        cls = f.default_factory
        values = saved.get(f.name, {})
        known = {x.name for x in dataclasses.fields(cls)}
        sections[f.name] = cls(**{k: v for k, v in values.items() if k in known})
    return render_toml(ProjectConfig(**sections))


@dataclass(frozen=True)
class RunHistory:
    """What the sessions before a resumed one recorded, up to the checkpoint it continues from."""
    elapsed: float = 0.0
    first_loss: float | None = None
    last_loss: float | None = None
    last_eval_loss: float | None = None


def rewind_metrics(run_dir: Path, step: int) -> RunHistory:
    """Drop metrics.jsonl lines after `step` (the resumed checkpoint) and sum up the ones kept."""
    kept = truncate_metrics(run_dir, step)
    return RunHistory(
        elapsed=float(kept[-1]["elapsed"]) if kept else 0.0,
        first_loss=next((m["loss"] for m in kept if m.get("loss") is not None), None),
        last_loss=next((m["loss"] for m in reversed(kept) if m.get("loss") is not None), None),
        last_eval_loss=next((m["eval_loss"] for m in reversed(kept) if m.get("eval_loss") is not None), None))


# ---------------------------------------------------------------- evaluation headline

@dataclass(frozen=True)
class EvalSummary:
    metric: str                  # the task's headline metric
    tuned: float | None          # the tuned student's score on it
    gap: float | None            # share of the teacher-base gap closed


def eval_summary(run_dir: Path) -> EvalSummary | None:
    """The evaluation headline of a run (tuned score and gap closed); None if not evaluated (or the
    file is unreadable)."""
    try:
        data = json.loads((Path(run_dir) / "eval" / "metrics.json").read_text("utf-8"))
        head = data["headline"]
        return EvalSummary(metric=head, tuned=data["models"]["tuned"].get(head),
                           gap=data["gap_closed"].get("value"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
