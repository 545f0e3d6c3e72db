"""stillroom demo: the whole loop on the bundled models, on a ready demo project."""
from __future__ import annotations

import sys
from pathlib import Path

from stillroom.tui.commands.common import console, stop_on_ctrl_c

NAME = "demo"
HELP = ("create (once) the support-routing demo project and open it in the workbench; "
        "--headless runs the whole loop in the terminal instead")


def add_arguments(parser) -> None:
    parser.add_argument("path", nargs="?", type=Path, default=None,
                        help="demo project folder (default: support-routing in the Stillroom data folder)")
    parser.add_argument("--headless", action="store_true",
                        help="no workbench: generate, train, evaluate and print the results")
    parser.add_argument("--count", type=int, default=40, help="headless: kept rows to generate")


def demo_project(path):
    from stillroom.core import locations
    from stillroom.core.project import CONFIG_NAME, Project
    path = Path(path) if path else locations.default_project_dir("support-routing")
    if (path / CONFIG_NAME).exists():
        return Project.open(path)
    return Project.create(path, demo=True)


def run(args) -> int:
    project = demo_project(args.path)
    if not args.headless and sys.stdout.isatty():
        from stillroom.tui.commands.open import open_app
        return open_app(project.root)
    return run_headless(project, args.count)


def run_headless(project, count: int) -> int:
    """Generate, train and evaluate, each as a job in a child process (core.jobs); Ctrl-C stops the one
    running."""
    from stillroom.core.errors import Cancelled
    from stillroom.core.job_kinds import evaluation_job, generation_job, training_job
    from stillroom.tui.commands import eval as eval_command
    from stillroom.tui.commands import generate as generate_command
    from stillroom.tui.commands import train as train_command
    out = console()
    out.print(f"demo project: {project.root}")
    current = []

    def stop() -> None:
        if current:
            current[-1].stop()

    with project.lock("stillroom demo"), stop_on_ctrl_c(stop) as cancel:
        current.append(generation_job(project.root))
        with current[-1]:
            result = generate_command.run_with_progress(current[-1], count)
        out.print(f"generated: {result.kept} kept, {result.rejected} rejected")
        if cancel.is_set():
            return 130
        current.append(training_job(project.root))
        trained = train_command.run_with_progress(project, job=current[-1])
        train_command.print_result(trained)
        if trained.cancelled or cancel.is_set():
            return 130
        current.append(evaluation_job(project.root, trained.run_id))
        try:
            evaluated = eval_command.run_with_progress(current[-1])
        except Cancelled:
            return 130
        eval_command.print_result(evaluated)
    return 0
