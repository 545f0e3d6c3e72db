"""Answers that do not depend on the run: the teacher's and the base student's, kept between evaluations.

Every evaluation asks the teacher, the base student and the prompted baselines (few-shot, scored) the
same test rows; only the tuned student (and the seed-only student, cached by core.seed_only) changes
from run to run. Their answers are kept in runs/_answers/<column>-<key>.jsonl, one line per test row,
where <key> hashes everything the answers depend on:

* the model: its settings and the weights file's size and modification time (a GGUF, a model folder's
  files, or a server's URL and model name), and for a student the device and dtype it ran on;
* the settings the evaluation asks with: the task (system prompt, labels, type), the evaluation's
  decoding and shots settings, the generation settings the teacher's prompts and label scoring read;
* the seeds that can be shown as shots, and each row's position, input and system prompt.

A column is reused only when every test row has a kept answer; otherwise it is asked again whole and
its answers are merged into the file. Students decode in left-padded batches, so a row reused from an
evaluation over more rows can differ from a fresh answer in floating-point detail, never in what was
asked. A teacher passed in from outside is reused only when it says what it is (`cache_identity`):
the project's teacher loaded by core.backends does; a test's fake does not, unless it sets one.
`evaluation.reuse_answers = false` or `stillroom eval --fresh` asks every model again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Optional

from . import records
from .fsio import atomic_write_jsonl

VERSION = 1              # bump when the way a column is asked changes
ANSWERS_DIR = "_answers"


def digest(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def files_identity(path: Optional[Path]) -> list:
    """A weights file, or a model folder's files, by name, size and modification time."""
    if path is None:
        return []
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else []
    out = []
    for file in files:
        stat = file.stat()
        out.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def teacher_identity(project, ref=None) -> dict:
    """What the configured teacher is, without loading it (`ref`: its models.resolve, if done)."""
    from .models import resolve
    cfg = dataclasses.asdict(project.config.teacher)
    cfg.pop("n_threads", None)               # threads change the speed, not the answers
    ref = ref or resolve(project.config.teacher.model, project_dir=project.root)
    return {"settings": cfg, "kind": ref.kind, "url": ref.url, "files": files_identity(ref.path)}


def student_identity(project, student_ref: str, model) -> dict:
    """What the base student is: its weights folder, its [student] settings (chat template), and the
    device and dtype it answers on."""
    from .student import student_folder
    params = getattr(getattr(model, "model", None), "parameters", None)
    first = next(params(), None) if callable(params) else None
    return {"ref": student_ref, "settings": dataclasses.asdict(project.config.student),
            "files": files_identity(student_folder(student_ref, project_dir=project.root)),
            "device": str(getattr(first, "device", "")), "dtype": str(getattr(first, "dtype", ""))}


class AnswerCache:
    """The kept answers of one evaluation's run-independent columns."""

    def __init__(self, project, config, tests: list[dict], pool: list[dict], *, enabled: bool = True):
        self.dir = project.runs_dir / ANSWERS_DIR
        self.enabled = enabled
        ev, gen = config.evaluation, config.generation
        self.asked_with = {
            "version": VERSION, "task": dataclasses.asdict(config.task),
            "evaluation": {k: getattr(ev, k) for k in ("max_tokens", "batch_size", "seed", "few_shot")},
            "generation": {k: getattr(gen, k) for k in ("few_shot", "label_shots", "label_temperature", "top_p")},
            "pool": [r.get("messages") for r in pool],
        }
        self.row_keys = [digest([i, records.user_text(r), records.system_text(r)]) for i, r in enumerate(tests)]
        self.reused: list[str] = []

    def path(self, column: str, identity: dict) -> Path:
        return self.dir / f"{column}-{digest([column, identity, self.asked_with])}.jsonl"

    def load(self, column: str, identity: Optional[dict]) -> Optional[dict]:
        """{"name", "mode", "outputs"} when every test row has a kept answer, else None."""
        if not self.enabled or identity is None:
            return None
        kept = self._read(self.path(column, identity))
        if not kept or any(key not in kept for key in self.row_keys):
            return None
        first = kept[self.row_keys[0]] if self.row_keys else {}
        self.reused.append(column)
        return {"name": first.get("name", column), "mode": first.get("mode", ""),
                "outputs": [dict(kept[key]["output"]) for key in self.row_keys]}

    def store(self, column: str, identity: Optional[dict], name: str, mode: str, outputs: list[dict]) -> None:
        if not self.enabled or identity is None or any(o is None for o in outputs):
            return
        path = self.path(column, identity)
        kept = self._read(path)
        for key, output in zip(self.row_keys, outputs):
            kept[key] = {"row": key, "name": name, "mode": mode,
                         "output": {k: v for k, v in output.items() if not k.startswith("judge")}}
        atomic_write_jsonl(path, list(kept.values()))

    @staticmethod
    def _read(path: Path) -> dict:
        """Kept answers by row key; an unreadable line is only an answer to ask again."""
        kept = {}
        try:
            lines = path.read_text("utf-8").splitlines() if path.exists() else []
        except (OSError, UnicodeDecodeError):
            return {}
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("row"), str) and isinstance(record.get("output"), dict):
                kept[record["row"]] = record
        return kept
