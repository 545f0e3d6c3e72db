"""Importing example rows into a project, and what an import infers about the task.

An import into a project whose task is still a new project's placeholder (classification with labels
label_a, label_b) takes the task from the rows: their answers become the labels or, when they cannot be
labels, set the task kind (core/task_guess.py). An import into a configured task is checked against it:
answers that do not fit (a label outside task.labels) refuse the whole import with one line naming their
lines, and nothing is written, since a wrong seed label or test reference is bad input, not a warning.

    result = import_into(project, Path("tickets.csv"), to="seeds", input_column="text", output_column="team")
    project, notice = create_from(Path("my-task"), Path("tickets.csv"), test=Path("test.csv"))
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from . import records
from .config import TaskConfig
from .errors import DataError
from .project import Project
from .task_guess import (Guess, could_be_labels, guess_kind, has_placeholder_labels, label_shaped,
                         labels_from_answers)
from .tasks import Classification, TaskKind, kind_named, task_kind

# Column names a CSV's input and answer often have, most telling first.
INPUT_NAMES = ("input", "text", "question", "prompt", "instruction", "query", "sentence", "ticket")
ANSWER_NAMES = ("output", "answer", "label", "response", "target", "completion", "class", "intent")


@dataclass(frozen=True)
class ImportPlan:
    task: TaskConfig     # the task after the import
    notice: str          # one line saying what the import set in the task; "" when it set nothing


@dataclass(frozen=True)
class ImportResult:
    count: int           # rows imported
    total: int           # rows in the target afterwards
    target: Path
    notice: str


def read_options(input_column: str = "input", output_column: str = "output", system_column: str = "",
                 fmt: str = "auto") -> dict:
    """The import_placed keywords for a file's format and columns."""
    return {"fmt": fmt, "input_column": input_column, "output_column": output_column,
            "system_column": system_column}


def task_of_kind(task: TaskConfig, kind: TaskKind) -> TaskConfig:
    """`task` as a task of `kind`: its type, labels and schema, and the kind's field names where the old
    ones were the old kind's defaults (names the user chose stay)."""
    old = kind_named(task.type).defaults
    fields = {"type": kind.name, "labels": list(kind.labels), "json_schema": kind.json_schema}
    for key in ("input_name", "output_name"):
        if getattr(task, key) == old.get(key) and key in kind.defaults:
            fields[key] = kind.defaults[key]
    return replace(task, **fields)


def describe(guess: Guess) -> str:
    """One line: the kind guessed, why, and the labels it set."""
    labels = f"; labels: {', '.join(guess.kind.labels)}" if guess.kind.labels else ""
    return f"task kind guessed: {guess.kind.name} ({guess.reason}){labels}"


def plan_import(task: TaskConfig, rows_after: Sequence[dict], placed: Sequence[tuple[str, dict]],
                source) -> ImportPlan:
    """The task after importing `placed` ((place, row) pairs read from `source`); `rows_after` is every
    row the project will hold, seeds first. Raises DataError when the new answers do not fit a
    configured task."""
    if has_placeholder_labels(task):
        answers = [records.answer_text(r) for r in rows_after]
        if could_be_labels(answers):
            labels = labels_from_answers(answers)
            return ImportPlan(replace(task, labels=labels), f"labels set from the answers: {', '.join(labels)}")
        if len(labels_from_answers(answers)) < 2 and all(label_shaped(a) for a in answers):
            return ImportPlan(task, "")          # one short answer so far: nothing to tell from yet
        guess = guess_kind(answers)
        return ImportPlan(task_of_kind(task, guess.kind), describe(guess))
    problem = task_kind(task).imported_answers_problem(
        [(place, records.answer_text(row)) for place, row in placed], source)
    if problem:
        raise DataError(problem)
    return ImportPlan(task, "")


def read_and_plan(task: TaskConfig, seeds: Sequence[dict], tests: Sequence[dict], path: Path, to: str,
                  **options) -> tuple[list[dict], ImportPlan]:
    """The rows `path` holds and the task after adding them to `to` ("seeds" or "test"), next to the
    project's `seeds` and `tests`; nothing is written."""
    placed = records.import_placed(path, system=task.system_prompt, **read_options(**options))
    new = [row for _, row in placed]
    rows_after = [*seeds, *new, *tests] if to == "seeds" else [*seeds, *tests, *new]
    return new, plan_import(task, rows_after, placed, path)


def guess_columns(path: Path) -> dict:
    """read_options keywords naming a CSV's input and answer columns when the file lacks columns called
    input and output: the first known names (INPUT_NAMES, ANSWER_NAMES), else a two-column file's two
    columns in order; {} for other files, or when there is nothing to go on (the import then names the
    columns it found)."""
    if Path(path).suffix.lower() not in (".csv", ".tsv"):
        return {}
    header = records.csv_header(path)
    by_name = {column.strip().lower(): column for column in header}
    if "input" in by_name and "output" in by_name:
        return {}
    found = [next((by_name[n] for n in names if n in by_name), None) for names in (INPUT_NAMES, ANSWER_NAMES)]
    if None in found and len(header) == 2:
        found = list(header)
    if None in found or found[0] == found[1]:
        return {}
    return {"input_column": found[0], "output_column": found[1]}


def import_into(project: Project, path: Path, *, to: str = "seeds", replace_rows: bool = False,
                **options) -> ImportResult:
    """Read `path` into the project's seeds or test rows (the caller holds the project lock); the
    config is written after the rows when the import set the task."""
    seeds = project.all_seeds()
    tests = project.tests() if project.test_path.exists() else []
    if replace_rows:
        seeds, tests = (([], tests) if to == "seeds" else (seeds, []))
    new, plan = read_and_plan(project.config.task, seeds, tests, path, to, **options)
    if to == "seeds":
        seeds = seeds + new
    else:
        tests = tests + new
    if to == "seeds":
        project.save_seeds(seeds)
    else:
        project.save_tests(tests)
    if plan.task != project.config.task:
        project.config.task = plan.task
        project.save_config()
    return ImportResult(len(new), len(seeds if to == "seeds" else tests),
                        project.seeds_path if to == "seeds" else project.test_path, plan.notice)


def create_from(root: Path, seeds_file: Path, *, test: Optional[Path] = None, task_type: str = "",
                name: str = "", **options) -> tuple[Project, str]:
    """A new project holding the rows of `seeds_file` (and `test`) as seeds (and test rows), its task
    kind guessed from their answers unless `task_type` names it; returns the project and one line
    saying what was guessed or set. Nothing is written when a file or its answers are refused."""
    read = read_options(**options)
    placed_seeds = records.import_placed(seeds_file, **read)
    placed_tests = records.import_placed(test, **read) if test else []
    rows = [row for _, row in placed_seeds + placed_tests]
    answers = [records.answer_text(r) for r in rows]
    if task_type:
        kind = _named_kind(task_type, answers, seeds_file)
        notice = f"task kind: {kind.name}" + (f"; labels: {', '.join(kind.labels)}" if kind.labels else "")
    else:
        guess = guess_kind(answers)
        kind, notice = guess.kind, describe(guess)
    for path, placed in ((seeds_file, placed_seeds), (test, placed_tests)):
        problem = kind.imported_answers_problem([(p, records.answer_text(r)) for p, r in placed],
                                                path) if placed else None
        if problem:
            raise DataError(problem)
    task = task_of_kind(replace(TaskConfig(name=name, type=kind.name), **kind.new_task_settings()), kind)
    project = Project.create(root, kind.name, name=name, task=task,
                             seeds=[row for _, row in placed_seeds],
                             tests=[row for _, row in placed_tests] if test else None)
    return project, notice


def _named_kind(task_type: str, answers: Sequence[str], source: Path) -> TaskKind:
    """The kind `task_type` names, bound to the labels or schema the answers give."""
    cls = kind_named(task_type)
    if cls.uses_labels:
        if not could_be_labels(answers):
            raise DataError(f"{source}: the answers cannot be labels ({len(set(answers))} distinct; "
                            f"labels are 2 to 50 short one-line answers); choose another --task-type")
        return Classification(labels=tuple(labels_from_answers(answers)))
    if cls.uses_schema:
        guess = guess_kind(answers)
        return cls(json_schema=guess.kind.json_schema) if guess.kind.json_schema else cls(
            json_schema=cls.defaults["json_schema"])
    return cls()
