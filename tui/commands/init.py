"""stillroom init PATH: create a project folder."""
from __future__ import annotations

from stillroom.tui.commands.common import console

NAME = "init"
HELP = "create a project folder (stillroom.toml, seeds.jsonl); --demo for a ready demo project"


def add_arguments(parser) -> None:
    from pathlib import Path

    from stillroom.core.config import TASK_TYPES
    parser.add_argument("path", type=Path, help="new project folder")
    parser.add_argument("--task-type", default="classification", choices=TASK_TYPES)
    parser.add_argument("--demo", action="store_true",
                        help="a support-ticket routing demo with 24 seeds and 64 test rows")
    parser.add_argument("--name", default="", help="task name (default: the folder's name)")


def run(args) -> int:
    from stillroom.core.project import Project
    project = Project.create(args.path, args.task_type, demo=args.demo, name=args.name)
    out = console()
    out.print(f"created {project.root} ({project.config.task.type})")
    if args.demo:
        out.print(f"  {len(project.all_seeds())} seeds, {len(project.tests())} test rows")
        out.print(f"next: stillroom generate {project.root} --count 20")
    else:
        out.print(f"next: edit {project.config_path} and add examples to {project.seeds_path}")
    return 0
