"""stillroom eval PATH [--run RUN]: teacher, base student and tuned student on the held-out rows."""
from __future__ import annotations

from stillroom.tui.commands.common import add_project_and_run, console, stop_on_ctrl_c
from stillroom.tui.format import fmt_seconds

NAME = "eval"
HELP = ("score the teacher, the base student, its baselines (few-shot, scored, seed-only) and the tuned "
        "student on the held-out test rows; writes runs/<run-id>/eval/ (predictions, metrics, report) and "
        "prints the gap closed")


def add_arguments(parser) -> None:
    add_project_and_run(parser)
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="evaluate only the first N test rows (default: evaluation.max_examples, 0 = all)")
    parser.add_argument("--judge", action="store_true", default=None,
                        help="also let the teacher grade every answer against the reference")
    parser.add_argument("--fresh", action="store_true",
                        help="ask the teacher and the base student again instead of reusing their answers "
                             "from an earlier evaluation with the same rows and settings")


def run(args) -> int:
    from stillroom.core.errors import Cancelled
    from stillroom.core.project import Project
    project = Project.open(args.path)
    if args.limit is not None and args.limit < 1:
        from stillroom.core.errors import StillroomError
        raise StillroomError(f"--limit must be at least 1, got {args.limit}")
    from stillroom.core.job_kinds import evaluation_job
    job = evaluation_job(project.root, args.run_id, limit=args.limit, judge=args.judge, fresh=args.fresh)
    with project.lock("stillroom eval"), stop_on_ctrl_c(job.stop):
        try:
            result = run_with_progress(job)
        except Cancelled:
            console(stderr=True).print("evaluation stopped; nothing written")
            return 130
    print_result(result)
    return 0


def run_with_progress(job):
    """Run an evaluation job (core.job_kinds.evaluation_job) with progress bars; its EvalResult."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from stillroom.core import events
    from stillroom.core.job_kinds import evaluation_result
    from stillroom.core.evaluate import TITLES

    out = console(stderr=True)
    with Progress(TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=out) as bar:
        tasks = {}
        status = bar.add_task("eval", total=None, info="")

        def on_event(event):
            if isinstance(event, events.EvalProgress):
                if event.model not in tasks:
                    tasks[event.model] = bar.add_task(TITLES.get(event.model, event.model), total=event.total,
                                                      info="")
                bar.update(tasks[event.model], completed=event.done, total=event.total)
            elif isinstance(event, events.TrainStep):        # the seed-only student, trained on first use
                if "seed-only training" not in tasks:
                    tasks["seed-only training"] = bar.add_task("seed-only train", total=event.max_steps, info="")
                loss = f"loss {event.loss:.3f}" if event.loss is not None else ""
                bar.update(tasks["seed-only training"], completed=event.step, total=event.max_steps, info=loss)
            elif isinstance(event, events.Status):
                bar.update(status, info=event.message)

        result = evaluation_result(job.args["project_root"], job.run(on_event))
        bar.update(status, info="done", total=1, completed=1)
    return result


def print_result(result) -> None:
    from rich.table import Table
    from rich.text import Text
    from stillroom.core import metrics
    from stillroom.core.evaluate import (TITLES, fmt_pct, model_keys, prompted_warning, side_figures,
                                         table_columns, verdict)

    m = result.metrics
    cols = table_columns(m)
    table = Table(title=f"run {m['run']} · {m['n']} test rows ({m['test_source']}) · {m['task_type']}",
                  title_justify="left")
    table.add_column("model", no_wrap=True)
    for c in cols:
        table.add_column(metrics.METRIC_NAMES.get(c, c), justify="right", no_wrap=True,
                         style="bold" if c == m["headline"] else None)
    table.add_column("s/answer", justify="right", style="dim", no_wrap=True)
    keys = model_keys(m)
    for key in keys:
        row = m["models"][key]
        cells = [str(row.get(c)) if c == "unparseable" else f"{row.get(c, 0):.3f}" for c in cols]
        table.add_row(TITLES[key], *cells, f"{row['seconds_per_answer']:.2f}")
    gap = m["gap_closed"]
    if gap["value"] is None:
        value = "undefined"
    elif gap["ci_low"] is not None:
        value = f"{fmt_pct(gap['value'])} [{fmt_pct(gap['ci_low'])}, {fmt_pct(gap['ci_high'])}]"
    else:
        value = fmt_pct(gap["value"])
    table.add_section()
    table.add_row("gap closed" + (" [95% CI]" if gap.get("ci_low") is not None else ""), value,
                  *[""] * len(cols))
    for label, figure in side_figures(m):
        table.add_row(label, figure, *[""] * len(cols))
    out = console()
    out.print(table)
    names = Text("", style="dim")
    for key in keys:
        row = m["models"][key]
        names.append(f"{TITLES[key]}: {row['name']} ({row['mode']})" + ("\n" if key != keys[-1] else ""))
    for key, reason in (m.get("skipped_baselines") or {}).items():
        names.append(f"\n{TITLES.get(key, key)}: not run ({reason})")
    if m.get("reused_answers"):
        names.append("\nreused from an earlier evaluation with the same rows and settings (--fresh to ask "
                     "again): " + ", ".join(TITLES[k] for k in m["reused_answers"]))
    out.print(names)
    for line in (verdict(gap), prompted_warning(m)):
        if line:
            out.print(line)
    out.print(f"wrote {result.eval_dir}/ (predictions.jsonl, metrics.json, report.md) in "
              f"{fmt_seconds(m.get('seconds'))}")
