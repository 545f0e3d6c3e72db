"""The jobs that run native model code, each as a pair: the child's function and the parent's `Job`.

* generation: a session that loads the teacher once and fills data/synthetic.jsonl on each request
  (`{"target": N}`); `stop` ends the request cleanly, the teacher stays loaded for the next one.
* chat: a session per model group ("teacher", or "students": the tuned student and its base) that
  answers one column's latest message per request, streaming its tokens.

A test (or an embedding program) can replace the teacher with its own by naming a factory
"module:function" that takes the Project: the child imports it, so it must be importable by name.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

from . import events as ev
from .jobs import LLAMACPP_CRASH_HINT, Job, JobContext, jsonable, load_function, serve_session


def _close(model) -> None:
    if model is not None and hasattr(model, "close"):
        try:
            model.close()
        except Exception:  # noqa: BLE001 - unloading must not hide the job's own outcome
            pass


def load_teacher_for(project, teacher_factory: Optional[str] = None, spare_core: bool = False,
                     batched: bool = False):
    """The project's teacher, or `teacher_factory(project)`'s. With `spare_core` and n_threads = 0
    ("all cores"), one core is left to the interface, so typing stays quick while the teacher writes.
    `batched`: it writes many candidates at once (see backends.load_teacher)."""
    if teacher_factory:
        return load_function(teacher_factory)(project)
    from .backends import load_teacher
    if spare_core and project.config.teacher.n_threads == 0 and (os.cpu_count() or 1) > 1:
        project.config.teacher.n_threads = (os.cpu_count() or 2) - 1     # this process's copy only
    return load_teacher(project, batched=batched)


# ---------------------------------------------------------------- generation

class _TeacherHolder:
    """The loaded teacher, reloaded when the project's [teacher] settings change between requests."""

    def __init__(self, ctx: JobContext, factory: Optional[str], spare_core: bool):
        self.ctx, self.factory, self.spare_core = ctx, factory, spare_core
        self.model = None
        self.key = None

    def get(self, project):
        key = json.dumps(dataclasses.asdict(project.config.teacher), sort_keys=True)
        if self.model is None or key != self.key:
            self.close()
            self.ctx.emit(ev.Status(f"loading teacher {project.config.teacher.model}…"))
            self.model = load_teacher_for(project, self.factory, self.spare_core, batched=True)
            self.key = key
            self.ctx.emit(ev.Status(f"teacher {getattr(self.model, 'name', 'ready')} ready"))
        return self.model

    def close(self) -> None:
        model, self.model = self.model, None
        _close(model)


def generation_session(ctx: JobContext, project_root: str, teacher_factory: Optional[str] = None,
                       spare_core: bool = False) -> dict:
    from .generate import generate
    from .project import Project
    teacher = _TeacherHolder(ctx, teacher_factory, spare_core)

    def handle(request: dict) -> dict:
        project = Project.open(project_root)
        model = teacher.get(project)
        return jsonable(generate(project, int(request["target"]), teacher=model, on_event=ctx.emit,
                                 cancel=ctx.cancel))
    try:
        return serve_session(ctx, handle)
    finally:
        teacher.close()


def generation_job(project_root: Path | str, *, teacher_factory: Optional[str] = None,
                   spare_core: bool = False) -> Job:
    """The teacher in a child process; `job.call({"target": N})` generates until N rows are kept."""
    root = Path(project_root)
    return Job("stillroom.core.job_kinds:generation_session",
               {"project_root": str(root), "teacher_factory": teacher_factory, "spare_core": spare_core},
               what="teacher", log_path=root / "data" / ".teacher.log", crash_hint=LLAMACPP_CRASH_HINT)


def generation_result(result: dict):
    from .generate import GenerationResult
    names = {f.name for f in dataclasses.fields(GenerationResult)}
    return GenerationResult(**{k: v for k, v in result.items() if k in names})


# ---------------------------------------------------------------- chat

def _chat_models(project, group: str, run_id: Optional[str], teacher_factory: Optional[str]) -> dict:
    """column -> model for one group: {"teacher": ...} or {"tuned": ..., "base": ...}."""
    if group == "teacher":
        return {"teacher": load_teacher_for(project, teacher_factory)}
    if run_id is None:
        from .backends.hf import HFModel
        ref = project.config.student.model
        model = HFModel.load(ref, project_dir=project.root, device=project.config.evaluation.device,
                             name=ref.split(":", 1)[-1])
        return {"tuned": model, "base": model}
    from .evaluate import load_students, run_weights
    base, tuned = load_students(project, run_weights(project, run_id))
    return {"tuned": tuned, "base": base}


def chat_session(ctx: JobContext, project_root: str, group: str, run_id: Optional[str] = None,
                 teacher_factory: Optional[str] = None) -> dict:
    from . import chat as chat_core
    from .backends.base import SamplingParams
    from .project import Project
    project = Project.open(project_root)
    models: dict = {}

    def handle(request: dict) -> dict:
        column = request["column"]
        if not models:
            what = "teacher " + project.config.teacher.model if group == "teacher" else "the student"
            ctx.emit(ev.Status(f"loading {what}…"))
            models.update(_chat_models(project, group, run_id, teacher_factory))
        model = models[column]
        conversation = chat_core.Conversation.from_json(project.config.task, request["conversation"])
        slot = chat_core.slot_for(column, model, project.config.teacher.mode)
        ctx.emit(ev.ModelReady(column, getattr(model, "name", "")))
        completion = chat_core.respond(
            model, conversation, slot, SamplingParams(**request["params"]),
            on_token=lambda text: ctx.emit(ev.TokenStreamed(text, source=column, purpose="chat")),
            cancel=ctx.cancel)
        return {"text": completion.text, "finish_reason": completion.finish_reason,
                "completion_tokens": completion.completion_tokens}
    try:
        return serve_session(ctx, handle)
    finally:
        for model in {id(m): m for m in models.values()}.values():
            _close(model)


def chat_job(project_root: Path | str, group: str, *, run_id: Optional[str] = None,
             teacher_factory: Optional[str] = None) -> Job:
    """One chat model group in a child process: "teacher", or "students" (tuned and base of `run_id`)."""
    root = Path(project_root)
    what = "teacher" if group == "teacher" else "student"
    return Job("stillroom.core.job_kinds:chat_session",
               {"project_root": str(root), "group": group, "run_id": run_id, "teacher_factory": teacher_factory},
               what=what, log_path=root / "runs" / f".chat-{group}.log",
               crash_hint=LLAMACPP_CRASH_HINT if group == "teacher" else "")


# ---------------------------------------------------------------- training, evaluation, export

HOLD_AT_STEP = "STILLROOM_TEST_HOLD_AT_STEP"


def _held_at(step: Optional[str], on_event, cancel):
    """Test seam (tests only; nothing else sets it): with STILLROOM_TEST_HOLD_AT_STEP=N in its
    environment the training job reports step N and then waits until it is stopped, so a test can stop
    a run at a known step whatever the machine's speed."""
    if not step:
        return on_event

    def held(event) -> None:
        on_event(event)
        if isinstance(event, ev.TrainStep) and event.step == int(step):
            cancel.wait()
    return held


def training(ctx: JobContext, project_root: str, resume: Optional[str] = None,
             overrides: Optional[dict] = None) -> dict:
    from .project import Project
    from .train import train
    on_event = _held_at(os.environ.get(HOLD_AT_STEP), ctx.emit, ctx.cancel)
    return jsonable(train(Project.open(project_root), on_event=on_event, cancel=ctx.cancel,
                          resume=resume or None, overrides=overrides or None))


def training_job(project_root: Path | str, *, resume: Optional[str] = None,
                 overrides: Optional[dict] = None) -> Job:
    """One training run; stopping saves a checkpoint, so the run can be resumed."""
    root = Path(project_root)
    return Job("stillroom.core.job_kinds:training",
               {"project_root": str(root), "resume": resume,
                "overrides": {k: v for k, v in (overrides or {}).items() if v is not None}},
               what="training", log_path=root / "runs" / ".train-process.log")


def evaluation(ctx: JobContext, project_root: str, run_id: Optional[str] = None, limit: Optional[int] = None,
               judge: Optional[bool] = None, teacher_factory: Optional[str] = None, fresh: bool = False) -> dict:
    from .evaluate import evaluate
    from .project import Project
    project = Project.open(project_root)
    teacher = None
    if teacher_factory:
        ctx.emit(ev.Status("loading the teacher"))
        teacher = load_teacher_for(project, teacher_factory)
    try:
        result = evaluate(project, run_id, on_event=ctx.emit, cancel=ctx.cancel, teacher=teacher, limit=limit,
                          judge=judge, fresh=fresh)
    finally:
        _close(teacher)
    return {"run_id": result.run_id, "eval_dir": str(result.eval_dir)}


def evaluation_job(project_root: Path | str, run_id: Optional[str] = None, *, limit: Optional[int] = None,
                   judge: Optional[bool] = None, teacher_factory: Optional[str] = None, fresh: bool = False) -> Job:
    """Teacher, base and tuned student on the test rows; a stopped evaluation writes nothing."""
    root = Path(project_root)
    return Job("stillroom.core.job_kinds:evaluation",
               {"project_root": str(root), "run_id": run_id, "limit": limit, "judge": judge,
                "teacher_factory": teacher_factory, "fresh": fresh},
               what="evaluation", log_path=root / "runs" / ".eval-process.log", crash_hint=LLAMACPP_CRASH_HINT)


def evaluation_result(project_root: Path | str, result: dict):
    from .evaluate import read_eval
    from .project import Project
    return read_eval(Project.open(project_root), result["run_id"])


def exporting(ctx: JobContext, project_root: str, run_id: Optional[str], fmt: str, options: dict) -> dict:
    from .export import export
    from .project import Project
    return jsonable(export(Project.open(project_root), run_id, fmt, on_event=ctx.emit, cancel=ctx.cancel,
                           **options))


def export_job(project_root: Path | str, run_id: Optional[str], fmt: str, **options) -> Job:
    """Export a run in one format (options as core.export.export takes them); the GGUF check loads the
    export in llama.cpp, in this job's process."""
    root = Path(project_root)
    return Job("stillroom.core.job_kinds:exporting",
               {"project_root": str(root), "run_id": run_id, "fmt": fmt,
                "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}},
               what="export", log_path=root / "exports" / ".export.log", crash_hint=LLAMACPP_CRASH_HINT)


def export_result(result: dict):
    from .export import ExportResult
    return ExportResult(result["format"], [Path(p) for p in result.get("paths", [])], result.get("check"),
                        result.get("quants"))


def training_result(result: dict):
    from .train import TrainResult
    names = {f.name for f in dataclasses.fields(TrainResult)}
    values = {k: v for k, v in result.items() if k in names}
    values["run_dir"] = Path(values["run_dir"])
    values["output_dir"] = Path(values["output_dir"]) if values.get("output_dir") else None
    return TrainResult(**values)


# ---------------------------------------------------------------- the improve loop

HOLD_IMPROVE = "STILLROOM_TEST_HOLD_IMPROVE"


def _held_in_step(spec: Optional[str], on_event, cancel):
    """Test seam (tests only; nothing else sets it): with STILLROOM_TEST_HOLD_IMPROVE="STEP:N" the
    improve job, in round step STEP, reports its N-th kept row (or training step, or progress event)
    and then waits until it is stopped or killed, so a test can interrupt a known step."""
    if not spec:
        return on_event
    step, _, count = spec.partition(":")
    seen = {"step": "", "n": 0}

    def held(event) -> None:
        on_event(event)
        if isinstance(event, ev.ImproveStep):
            seen["step"], seen["n"] = event.step, 0
        elif seen["step"] == step and isinstance(event, (ev.ExampleAccepted, ev.TrainStep, ev.EvalProgress)):
            seen["n"] += 1
            if seen["n"] == int(count or 1):
                cancel.wait()
    return held


def improving(ctx: JobContext, project_root: str, rounds: Optional[int] = None, review: bool = False,
              probe: Optional[int] = None, run_id: Optional[str] = None,
              teacher_factory: Optional[str] = None) -> dict:
    from .improve import improve
    from .project import Project
    project = Project.open(project_root)
    on_event = _held_in_step(os.environ.get(HOLD_IMPROVE), ctx.emit, ctx.cancel)
    teacher = None
    if teacher_factory:
        teacher = load_teacher_for(project, teacher_factory, batched=True)
    try:
        return jsonable(improve(project, rounds=rounds, review=review, probe=probe, run=run_id, teacher=teacher,
                                on_event=on_event, cancel=ctx.cancel))
    finally:
        _close(teacher)


def improve_job(project_root: Path | str, *, rounds: Optional[int] = None, review: bool = False,
                probe: Optional[int] = None, run_id: Optional[str] = None,
                teacher_factory: Optional[str] = None) -> Job:
    """The improve loop (core.improve) in a child process; a stop or a kill resumes at the step it was in."""
    root = Path(project_root)
    return Job("stillroom.core.job_kinds:improving",
               {"project_root": str(root), "rounds": rounds, "review": review, "probe": probe, "run_id": run_id,
                "teacher_factory": teacher_factory},
               what="improve", log_path=root / "runs" / ".improve.log", crash_hint=LLAMACPP_CRASH_HINT)


def improve_result(result: dict):
    from .improve import ImproveResult
    names = {f.name for f in dataclasses.fields(ImproveResult)}
    return ImproveResult(**{k: v for k, v in result.items() if k in names})
