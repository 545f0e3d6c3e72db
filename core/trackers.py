"""Experiment trackers a training run also reports to (`training.report_to`): TensorBoard, Weights &
Biases, MLflow or trackio, through Trainer's own integrations (TrainingArguments.report_to).

Nothing is sent anywhere unless the user names a tracker. The run's metrics.jsonl is written either
way and stays what the TUI reads. A named tracker whose package is missing stops the run before the
student loads, with one line naming the package and the extra that installs it.
"""
from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from .errors import ConfigError

# tracker -> the modules any one of which makes Trainer's integration work, and what pip installs
TRACKERS = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
    "mlflow": (("mlflow",), "mlflow"),
    "trackio": (("trackio",), "trackio"),
}
EXTRA = "stillroom[tracking]"


def installed(tracker: str) -> bool:
    """Whether the package the tracker's Trainer integration imports is installed."""
    modules, _ = TRACKERS[tracker]
    return any(importlib.util.find_spec(module) is not None for module in modules)


def check_trackers(names: Sequence[str]) -> None:
    """A clear error for an unknown tracker or one whose package is missing, before any work starts."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"training.report_to: unknown tracker {name!r}; expected "
                              f"{', '.join(TRACKERS)}")
        if not installed(name):
            package = TRACKERS[name][1]
            raise ConfigError(f"training.report_to names {name}, but the {package} package is not installed",
                              f"pip install {package}, or pip install '{EXTRA}' for every tracker")


def report_to(names: Sequence[str]) -> list[str] | str:
    """TrainingArguments.report_to: the named trackers, or "none" (Trainer's word for nothing)."""
    return list(names) or "none"


def tensorboard_dir(run_dir: Path) -> Path:
    """Where a run's TensorBoard event files go: beside its metrics, not among its checkpoints."""
    return run_dir / "tensorboard"


@contextmanager
def tracker_settings(names: Sequence[str], run_dir: Path):
    """While the Trainer is built: TensorBoard's integration reads its folder from the environment when
    it is made, so the variable is set for that moment only (a user's own value wins)."""
    if "tensorboard" not in names or os.environ.get("TENSORBOARD_LOGGING_DIR"):
        yield
        return
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(tensorboard_dir(run_dir))
    try:
        yield
    finally:
        os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
