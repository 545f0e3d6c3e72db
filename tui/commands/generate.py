"""stillroom generate PATH --count N: the teacher writes rows until N are kept."""
from __future__ import annotations

from pathlib import Path

from stillroom.tui.commands.common import console, stop_on_ctrl_c
from stillroom.tui.format import fmt_seconds

NAME = "generate"
HELP = "let the teacher write training rows until data/synthetic.jsonl holds N kept rows (resumable)"


def add_arguments(parser) -> None:
    parser.add_argument("path", type=Path, help="project folder")
    parser.add_argument("--count", "-n", type=int, required=True, help="kept rows wanted in all")


def run(args) -> int:
    from stillroom.core.generate import check_ready
    from stillroom.core.job_kinds import generation_job
    from stillroom.core.project import Project
    project = Project.open(args.path)
    check_ready(project, args.count)
    job = generation_job(project.root)          # the teacher runs in a child process: see core.jobs
    with project.lock("stillroom generate"), stop_on_ctrl_c(job.stop), job:
        result = run_with_progress(job, args.count)
    out = console()
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(result.rejected_by_reason.items(), key=lambda kv: -kv[1]))
    tps = result.teacher_tokens / result.teacher_seconds if result.teacher_seconds else 0.0
    status = "stopped" if result.cancelled else "done"
    out.print(f"{status}: {result.kept}/{result.target} kept, {result.rejected} rejected"
              f"{' (' + reasons + ')' if reasons else ''} in {fmt_seconds(result.elapsed)}, "
              f"teacher {tps:.1f} tok/s → {project.synthetic_path}")
    return 0


def run_with_progress(job, count: int):
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn
    from stillroom.core import events
    from stillroom.core.job_kinds import generation_result

    out = console(stderr=True)
    with Progress(TextColumn("[bold]generate"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=out, transient=False) as bar:
        task = bar.add_task("generate", total=count, info="loading teacher…")

        def on_event(event):
            if isinstance(event, events.GenerationProgress):
                bar.update(task, completed=event.kept,
                           info=f"kept {event.kept} · rejected {event.rejected} · "
                                f"{event.tokens_per_second:.0f} tok/s" + (f" · {event.note}" if event.note else ""))
            elif isinstance(event, events.Status):
                bar.update(task, info=event.message)

        return generation_result(job.call({"target": count}, on_event))
