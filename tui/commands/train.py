"""stillroom train PATH: fine-tune the student on the kept rows (resumable; Ctrl-C stops and saves).

Several processes (one per GPU, or two CPU processes to try it):

    accelerate launch --num_processes 2 --cpu -m stillroom.tui train PATH --max-steps 20

Rank 0 holds the project lock, draws the progress bar and writes the run folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from stillroom.tui.commands.common import console, stop_on_ctrl_c
from stillroom.tui.format import fmt_seconds

NAME = "train"
HELP = ("fine-tune the student on the seeds and kept rows (LoRA by default) into runs/<run-id>/; "
        "--resume continues a stopped or killed run")


def add_arguments(parser) -> None:
    parser.add_argument("path", type=Path, help="project folder")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN",
                        help="continue the newest stopped or interrupted run (or RUN) from its last checkpoint")
    parser.add_argument("--max-steps", type=int, default=None, metavar="N",
                        help="stop after N optimizer steps (overrides training.max_steps and epochs)")
    parser.add_argument("--epochs", type=float, default=None, metavar="E", help="passes over the rows")
    parser.add_argument("--method", choices=("lora", "full"), default=None, help="LoRA adapter or full fine-tuning")
    parser.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default=None,
                        help="where to train (default: training.device, auto)")
    parser.add_argument("--list", action="store_true", help="list the project's runs and exit")


def overrides_from(args) -> dict:
    out = {}
    if args.max_steps is not None:
        out["max_steps"] = args.max_steps
    if args.epochs is not None:
        out["epochs"] = args.epochs
        if args.max_steps is None:
            out["max_steps"] = 0          # --epochs alone means: train by epochs
    if args.method is not None:
        out["method"] = args.method
    if args.device is not None:
        out["device"] = args.device
    return out


def run(args) -> int:
    from stillroom.core.project import Project
    project = Project.open(args.path)
    if args.list:
        return print_runs(project)
    rank = int(os.environ.get("RANK", "0"))
    overrides = overrides_from(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun or accelerate every rank trains in its own process already, supervised by the
        # launcher; rank 0 names the run and reports.
        with stop_on_ctrl_c() as cancel:
            if rank == 0:
                with project.lock("stillroom train"):
                    result = run_with_progress(project, cancel=cancel, resume=args.resume, overrides=overrides)
            else:
                from stillroom.core.train import train
                result = train(project, cancel=cancel, resume=args.resume, overrides=overrides)
    else:
        from stillroom.core.job_kinds import training_job
        job = training_job(project.root, resume=args.resume, overrides=overrides)   # see core.jobs
        with project.lock("stillroom train"), stop_on_ctrl_c(job.stop):
            result = run_with_progress(project, job=job)
    if rank == 0:
        print_result(result)
    return 130 if result.cancelled else 0


def print_result(result) -> None:
    out = console()
    loss = f"{result.first_loss:.3f} → {result.final_loss:.3f}" if result.first_loss is not None and \
        result.final_loss is not None else (f"{result.final_loss:.3f}" if result.final_loss is not None else "–")
    eval_loss = f", eval loss {result.final_eval_loss:.3f}" if result.final_eval_loss is not None else ""
    if result.cancelled:
        out.print(f"stopped at step {result.step}/{result.max_steps}: loss {loss}{eval_loss}; "
                  f"continue with: stillroom train {result.run_dir.parent.parent} --resume {result.run_id}")
    else:
        out.print(f"done: {result.step} steps in {fmt_seconds(result.elapsed)}, loss {loss}{eval_loss}, "
                  f"{result.tokens_per_second:.0f} tok/s, peak memory {result.peak_memory_mb:.0f} MB"
                  f"{f', {result.truncated} rows truncated' if result.truncated else ''} → {result.output_dir}")


def print_runs(project) -> int:
    from stillroom.core.runs import list_runs
    out = console()
    runs = list_runs(project)
    if not runs:
        out.print(f"no training runs in {project.runs_dir}")
        return 0
    for run in runs:
        loss = f"{run.final_loss:.3f}" if run.final_loss is not None else "–"
        eval_loss = f"{run.final_eval_loss:.3f}" if run.final_eval_loss is not None else "–"
        out.print(f"{run.run_id}  {run.status:<11} {run.method:<4} step {run.step}/{run.max_steps}  "
                  f"loss {loss}  eval {eval_loss}  {run.created}")
    return 0


def run_with_progress(project, *, job=None, cancel=None, resume=None, overrides=None):
    """Train with a progress bar: as `job` (core.job_kinds.training_job), or in this process (a rank of a
    distributed launch); the TrainResult."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from stillroom.core import events

    out = console(stderr=True)
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  TextColumn("ETA {task.fields[eta]}"), console=out, transient=False) as bar:
        task = bar.add_task("train", total=None, info="loading the student…", eta="--:--")
        shown = {"loss": None, "eval": None}

        def on_event(event):
            if isinstance(event, events.TrainStarted):
                resumed = f" (resumed at step {event.step})" if event.step else ""
                bar.console.print(
                    f"run {event.run_id}{resumed}: {event.train_rows} training rows, {event.validation_rows} "
                    f"validation, {event.truncated} truncated · {event.method} on {event.device} "
                    f"({event.precision}){f' × {event.world_size} processes' if event.world_size > 1 else ''}",
                    markup=False, highlight=False)
                bar.update(task, total=event.max_steps, completed=event.step, info="first step…")
            elif isinstance(event, events.TrainStep):
                if event.loss is not None:
                    shown["loss"] = event.loss
                parts = [f"loss {shown['loss']:.3f}" if shown["loss"] is not None else "loss …"]
                if shown["eval"] is not None:
                    parts.append(f"eval {shown['eval']:.3f}")
                parts.append(f"{event.tokens_per_second:.0f} tok/s")
                bar.update(task, completed=event.step, total=event.max_steps, info=" · ".join(parts),
                           eta=fmt_seconds(event.eta))
            elif isinstance(event, events.EvalStep):
                shown["eval"] = event.eval_loss
                loss = f"loss {shown['loss']:.3f} · " if shown["loss"] is not None else ""
                bar.update(task, info=f"{loss}eval {event.eval_loss:.3f}")
            elif isinstance(event, events.CheckpointSaved):
                pass
            elif isinstance(event, events.Status):
                from rich.markup import escape
                bar.update(task, info=escape(event.message))

        if job is not None:
            from stillroom.core.job_kinds import training_result
            return training_result(job.run(on_event))
        from stillroom.core.train import train
        return train(project, on_event=on_event, cancel=cancel, resume=resume, overrides=overrides)
