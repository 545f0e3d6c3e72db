"""stillroom improve PATH: probe where the tuned student disagrees with the teacher, generate rows aimed at
those mistakes, retrain and evaluate, round after round (core.improve); a stopped or killed loop resumes at
the step it was in."""
from __future__ import annotations

from pathlib import Path

from stillroom.tui.commands.common import console, stop_on_ctrl_c

NAME = "improve"
HELP = ("rounds of: probe the tuned student against the teacher, generate rows around its mistakes, "
        "retrain, evaluate; prints a report per round; resumes where it stopped")


def add_arguments(parser) -> None:
    parser.add_argument("path", type=Path, help="project folder")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help="rounds the loop should have (default: 1 for a new loop; a stopped loop resumes)")
    parser.add_argument("--review", action="store_true",
                        help="stop after generating a round's targeted rows, so they can be reviewed and pruned "
                             "before the retrain (run improve again to go on)")
    parser.add_argument("--probe", type=int, default=None, metavar="K",
                        help="fresh probe inputs per round (default: improve.probe)")
    parser.add_argument("--run", dest="run_id", default=None, metavar="RUN",
                        help="start a new loop from this finished run (default: resume, else the newest run)")


def run(args) -> int:
    from stillroom.core.errors import StillroomError
    from stillroom.core.job_kinds import improve_job, improve_result
    from stillroom.core.project import Project
    project = Project.open(args.path)
    for flag, value in (("--rounds", args.rounds), ("--probe", args.probe)):
        if value is not None and value < 1:
            raise StillroomError(f"{flag} must be at least 1, got {value}")
    from stillroom.core.improve import check_ready
    check_ready(project, args.run_id)
    job = improve_job(project.root, rounds=args.rounds, review=args.review, probe=args.probe, run_id=args.run_id)
    with project.lock("stillroom improve"), stop_on_ctrl_c(job.stop):
        result = improve_result(run_with_progress(job))
    out = console()
    if result.cancelled:
        out.print(f"stopped; run again to resume: stillroom improve {project.root}")
        return 130
    if result.review_round:
        out.print(f"round {result.review_round}: targeted rows written; review them (Review filter "
                  f"'{result.review_filter}'), then run again to retrain: stillroom improve {project.root}")
        return 0
    if not result.rounds:
        out.print("every round of the loop is already done; --rounds N adds rounds")
    return 0


def run_with_progress(job) -> dict:
    """Run the improve job with a status line and a progress bar for the step in progress; prints the
    mistake groups and each round's report as they come."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from stillroom.core import events

    out = console(stderr=True)
    with Progress(TextColumn("[bold]{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task("improve", total=None, info="")

        def on_event(event):
            if isinstance(event, events.ImproveStep):
                bar.update(task, description=f"round {event.round}/{event.rounds}: {event.step}", completed=0,
                           total=None, info="")
            elif isinstance(event, events.GenerationProgress):
                bar.update(task, completed=event.kept, total=event.target,
                           info=f"{event.rejected} rejected")
            elif isinstance(event, events.TrainStep):
                bar.update(task, completed=event.step, total=event.max_steps,
                           info=f"loss {event.loss:.3f}" if event.loss is not None else "")
            elif isinstance(event, events.EvalProgress):
                bar.update(task, completed=event.done, total=event.total, info=event.model)
            elif isinstance(event, events.Status):
                bar.update(task, info=escape(event.message))
            elif isinstance(event, events.MistakesFound):
                bar.console.print(mistakes_text(event), markup=False, highlight=False)
            elif isinstance(event, events.RoundReport):
                bar.console.print(report_text(event.report), markup=False, highlight=False)

        return job.run(on_event)


def mistakes_text(event) -> str:
    lines = [f"round {event.round}: the student disagrees with the teacher on {event.disagreements} of "
             f"{event.probe} probe inputs"]
    for group in event.groups[:5]:
        lines.append(f"  {group['key']}: {group['size']}")
        for example in group["examples"][:2]:
            lines.append(f"      {example['input'][:90]}  → teacher {example['teacher'][:30]!r}, "
                         f"student {example['student'][:30]!r}")
    return "\n".join(lines)


def report_text(report: dict) -> str:
    """A round report in a few lines (core.improve.Round.report)."""
    from stillroom.tui.format import fmt_percent
    probe = report["probe"]

    def share(value, ci) -> str:
        if value is None:
            return "–"
        return f"{fmt_percent(value)} [{fmt_percent(ci[0])}, {fmt_percent(ci[1])}]" if ci and ci[0] is not None \
            else fmt_percent(value)

    def test(summary) -> str:
        if not summary:
            return "–"
        low, high = summary.get("tuned_ci") or (None, None)
        text = f"{summary['tuned']:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")
        gap = summary.get("gap_closed") or {}
        if gap.get("value") is not None:
            text += f", gap closed {fmt_percent(gap['value'])}"
            if gap.get("ci_low") is not None:
                text += f" [{fmt_percent(gap['ci_low'])}, {fmt_percent(gap['ci_high'])}]"
        return text

    metric = (report.get("test_after") or report.get("test_before") or {}).get("metric", "headline")
    lines = [f"round {report['round']} → run {report['run']} ({report['retrain']} retrain)",
             f"  rows added        {report['rows_added']} (of {report['rows_planned']} planned; Review filter "
             f"'{report['review_filter']}')",
             f"  probe disagreement {share(probe['disagree_before'], probe['disagree_before_ci'])} → "
             f"{share(probe['disagree_after'], probe['disagree_after_ci'])} of {probe['size']}",
             f"  test {metric:<12} {test(report.get('test_before'))} → {test(report.get('test_after'))}"]
    if report.get("groups"):
        lines.append("  largest groups    " + ", ".join(f"{g['key']} {g['size']}" for g in report["groups"]))
    return "\n".join(lines)
