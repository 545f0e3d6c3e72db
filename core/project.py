"""A project folder: stillroom.toml, seeds, test rows, generated rows, runs and exports."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path

from . import records
from .config import ProjectConfig, TaskConfig, load_config, render_toml
from .errors import ConfigError, StillroomError
from .fsio import atomic_write_jsonl, atomic_write_text
from .lock import ProjectLock
from .tasks import kind_named

CONFIG_NAME = "stillroom.toml"

DEMO_DESCRIPTION = (
    "Route each customer-support ticket to the team that should handle it. billing: charges, refunds, "
    "invoices, payment methods, prices. shipping: delivery, tracking, late, lost or damaged parcels, "
    "returns. technical: app or website errors, crashes, bugs, devices, sync. account: passwords, login "
    "details, email changes, two-factor, deleting or locking the account.")

def text_id(text: str) -> str:
    """A stable short id for a piece of text (seed ids, split membership)."""
    return hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:12]


class Project:
    def __init__(self, root: Path, config: ProjectConfig):
        self.root = Path(root)
        self.config = config

    # ------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def seeds_path(self) -> Path:
        return self.root / "seeds.jsonl"

    @property
    def test_path(self) -> Path:
        return self.root / "test.jsonl"

    @property
    def synthetic_path(self) -> Path:
        return self.root / "data" / "synthetic.jsonl"

    @property
    def split_path(self) -> Path:
        return self.root / "data" / "test_split.json"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def name(self) -> str:
        return self.config.task.name or self.root.name

    # ------------------------------------------------------------ open / create
    @classmethod
    def open(cls, root: Path | str) -> "Project":
        root = Path(root).expanduser()
        if not root.exists():
            raise StillroomError(f"{root}: no such folder", f"create a project with: stillroom init {root}")
        if not root.is_dir():
            raise StillroomError(f"{root}: not a folder; expected a project folder")
        return cls(root, load_config(root / CONFIG_NAME))

    @classmethod
    def create(cls, root: Path | str, task_type: str = "classification", *, demo: bool = False,
               name: str = "", task: TaskConfig | None = None, seeds: list[dict] | None = None,
               tests: list[dict] | None = None) -> "Project":
        """A new project folder; `task`, `seeds` and `tests` (rows) replace a new project's defaults."""
        root = Path(root).expanduser()
        kind = kind_named(task_type)
        if (root / CONFIG_NAME).exists():
            raise StillroomError(f"{root / CONFIG_NAME}: already exists; not overwriting a project")
        if root.exists() and not root.is_dir():
            raise StillroomError(f"{root}: exists and is not a folder")
        if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise StillroomError(f"{root}: folder is not empty; choose a new or empty folder")
        config = ProjectConfig()
        if demo:
            config.task = TaskConfig(
                name=name or "support-routing", description=DEMO_DESCRIPTION, type="classification",
                labels=["billing", "shipping", "technical", "account"],
                system_prompt=("Route the support ticket to one team. Answer with exactly one label: "
                               "billing, shipping, technical or account."),
                input_name="Ticket", output_name="Team")
            # Measured on the demo: a short answer on ~40-80 rows needs more, larger steps than the
            # general defaults give (15 steps at 2e-4 left the student answering in prose: 0.22
            # accuracy; 50 steps at 1e-3 reached 0.97, in under 4 minutes on 2 CPU cores).
            config.training.learning_rate = 1e-3
            config.training.batch_size = 4
            config.training.epochs = 5.0
        else:
            config.task = (replace(task, name=task.name or name or _slug(root.name)) if task else
                           replace(TaskConfig(name=name or _slug(root.name), type=task_type),
                                   **kind.new_task_settings()))
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        if demo:
            demo_files = resources.files("stillroom.core.demo")
            atomic_write_text(root / "seeds.jsonl", demo_files.joinpath("seeds.jsonl").read_text("utf-8"))
            atomic_write_text(root / "test.jsonl", demo_files.joinpath("test.jsonl").read_text("utf-8"))
        else:
            atomic_write_jsonl(root / "seeds.jsonl", [{"messages": r["messages"]} for r in seeds or []])
            if tests is not None:
                atomic_write_jsonl(root / "test.jsonl", [{"messages": r["messages"]} for r in tests])
        # The config goes last: a folder without it is not yet a project, so a kill leaves no half project.
        atomic_write_text(root / CONFIG_NAME, render_toml(config))
        return cls(root, config)

    # ------------------------------------------------------------ config
    def save_config(self, config: ProjectConfig | None = None) -> None:
        if config is not None:
            self.config = config
        atomic_write_text(self.config_path, render_toml(self.config))

    def reload(self) -> "Project":
        self.config = load_config(self.config_path)
        return self

    def lock(self, purpose: str = "") -> ProjectLock:
        return ProjectLock(self.root, purpose)

    def resolve_path(self, value: str, what: str) -> Path:
        """A path from the config, confined to the project folder unless it is absolute."""
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root.resolve()):
            raise ConfigError(f"{self.config_path}: {what} = {value!r} points outside the project folder; "
                              f"use an absolute path if you mean it")
        return full

    # ------------------------------------------------------------ rows
    def all_seeds(self) -> list[dict]:
        return records.read_jsonl(self.seeds_path, missing_ok=True)

    def _split_ids(self) -> set[str]:
        """Without test.jsonl, a fixed share of the seeds is held out; the choice is recorded on disk."""
        if self.split_path.exists():
            try:
                return set(json.loads(self.split_path.read_text("utf-8"))["test_ids"])
            except (ValueError, KeyError, TypeError):
                raise StillroomError(f"{self.split_path}: unreadable test split; delete it to draw a new one"
                                     ) from None
        import random
        seeds = self.all_seeds()
        fraction = self.config.evaluation.test_fraction
        count = int(round(len(seeds) * fraction))
        if len(seeds) < 8 or count == 0:
            return set()
        ids = sorted(text_id(records.user_text(r)) for r in seeds)
        random.Random(self.config.evaluation.seed).shuffle(ids)
        chosen = sorted(ids[:count])
        atomic_write_text(self.split_path, json.dumps({"test_ids": chosen}, indent=1) + "\n")
        return set(chosen)

    def seeds(self) -> list[dict]:
        """Seeds usable for training and few-shot prompts (held-out split removed)."""
        rows = self.all_seeds()
        if self.test_path.exists():
            return rows
        held = self._split_ids()
        return [r for r in rows if text_id(records.user_text(r)) not in held]

    def tests(self) -> list[dict]:
        """Held-out rows: test.jsonl, else the recorded split of the seeds."""
        if self.test_path.exists():
            return records.read_jsonl(self.test_path)
        held = self._split_ids()
        return [r for r in self.all_seeds() if text_id(records.user_text(r)) in held]

    def synthetic(self) -> list[dict]:
        return records.read_jsonl(self.synthetic_path, generated=True, missing_ok=True)

    def kept_rows(self) -> list[dict]:
        return [r for r in self.synthetic() if r.get("status") == "kept"]

    def save_seeds(self, rows: list[dict]) -> None:
        atomic_write_jsonl(self.seeds_path, [{"messages": r["messages"]} for r in rows])

    def save_tests(self, rows: list[dict]) -> None:
        atomic_write_jsonl(self.test_path, [{"messages": r["messages"]} for r in rows])

    def save_synthetic(self, rows: list[dict]) -> None:
        atomic_write_jsonl(self.synthetic_path, rows)

    def training_rows(self) -> list[dict]:
        """Seeds (messages only) and kept generated rows (messages, id, and the teacher's scores that
        distillation objectives learn from)."""
        rows = [{"messages": r["messages"], **{k: r[k] for k in ("id", "scores") if k in r}}
                for r in self.kept_rows()]
        if self.config.training.include_seeds:
            rows = [{"messages": r["messages"]} for r in self.seeds()] + rows
        return rows

    def run_dirs(self) -> list[Path]:
        if not self.runs_dir.exists():
            return []
        # runs/_baselines/ (cached baseline students) and hidden folders are not runs of the project.
        return sorted((p for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))),
                      key=lambda p: p.name)

    def run_dir(self, run: str | None = None) -> Path:
        runs = self.run_dirs()
        if run:
            path = self.runs_dir / run
            if not path.is_dir():
                raise StillroomError(f"{path}: no such run; runs are: "
                                     f"{', '.join(p.name for p in runs) or 'none yet'}")
            return path
        if not runs:
            raise StillroomError(f"{self.runs_dir}: no training runs yet", f"run: stillroom train {self.root}")
        return runs[-1]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "my-task"
