"""stillroom init PATH: create a project folder, empty, as the demo, or from a file of examples."""
from __future__ import annotations

from stillroom.tui.commands.common import add_column_arguments, column_options, console

NAME = "init"
HELP = ("create a project folder (stillroom.toml, seeds.jsonl); --demo for a ready demo project; "
        "--from FILE to start from examples, the task kind guessed from their answers")


def add_arguments(parser) -> None:
    from pathlib import Path

    from stillroom.core.config import TASK_TYPES
    parser.add_argument("path", type=Path, help="new project folder")
    parser.add_argument("--task-type", default="", choices=TASK_TYPES,
                        help="the task kind (default: classification; with --from, guessed from the answers)")
    parser.add_argument("--demo", action="store_true",
                        help="a support-ticket routing demo with 24 seeds and 64 test rows")
    parser.add_argument("--name", default="", help="task name (default: the folder's name)")
    parser.add_argument("--from", dest="from_file", type=Path, default=None, metavar="FILE",
                        help="seed examples to start from (CSV, OpenAI, Alpaca, ShareGPT or JSONL with columns)")
    parser.add_argument("--test", type=Path, default=None, metavar="FILE", help="with --from: test rows")
    add_column_arguments(parser, "with --from")


def run(args) -> int:
    from stillroom.core.errors import StillroomError
    from stillroom.core.project import Project
    out = console()
    if args.from_file is None:
        if args.test is not None:
            raise StillroomError("--test needs --from (the seed examples)")
        project = Project.create(args.path, args.task_type or "classification", demo=args.demo, name=args.name)
        out.print(f"created {project.root} ({project.config.task.type})")
        if args.demo:
            out.print(f"  {len(project.all_seeds())} seeds, {len(project.tests())} test rows")
            out.print(f"next: stillroom generate {project.root} --count 20")
        else:
            out.print(f"next: edit {project.config_path} and add examples to {project.seeds_path}")
        return 0
    if args.demo:
        raise StillroomError("--demo and --from do not go together: the demo brings its own examples")
    from stillroom.core.importing import create_from
    columns, guessed = column_options(args, args.from_file)
    project, notice = create_from(args.path, args.from_file, test=args.test, task_type=args.task_type,
                                  name=args.name, system_column=args.system_column, **columns)
    tests = f", {len(project.tests())} test rows" if args.test else ""
    out.print(f"created {project.root} ({project.config.task.type}) with {len(project.all_seeds())} seeds{tests}")
    if guessed:
        out.print(f"  {guessed}", soft_wrap=True)
    out.print(f"  {notice}", soft_wrap=True)
    if not args.task_type:
        out.print(f"  not right? edit task.type (and task.labels) in {project.config_path}, use the Task "
                  f"screen, or init again with --task-type", soft_wrap=True)
    out.print(f"next: stillroom generate {project.root} --count 20")
    return 0
