"""stillroom export PATH [--run RUN] --format adapter|merged|gguf|ollama: the files a user deploys."""
from __future__ import annotations

from pathlib import Path

from stillroom.tui.commands.common import add_project_and_run, console, stop_on_ctrl_c

NAME = "export"
HELP = ("export a run as a LoRA adapter, merged safetensors, a GGUF for llama.cpp (checked on the test "
        "set against the merged model) or an Ollama Modelfile, into exports/<run-id>/")


def add_arguments(parser) -> None:
    add_project_and_run(parser)
    parser.add_argument("--format", "-f", dest="fmt", required=True,
                        choices=("adapter", "merged", "gguf", "ollama"), help="what to write")
    parser.add_argument("--quant", choices=("f16", "q8_0"), default="q8_0", help="GGUF weight type")
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="merged weights' precision (auto: the student's own)")
    parser.add_argument("--no-check", action="store_true",
                        help="gguf: skip running the test set through the GGUF")
    parser.add_argument("--check-limit", type=int, default=None, metavar="N",
                        help="gguf: check on the first N test rows (default: evaluation.max_examples, 0 = all)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: exports/<run-id>/)")


def run(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from stillroom.core import events
    from stillroom.core.errors import Cancelled
    from stillroom.core.job_kinds import export_job, export_result
    from stillroom.core.project import Project

    project = Project.open(args.path)
    err = console(stderr=True)
    # The merge, the conversion and the GGUF check (llama.cpp) run in a child process: see core.jobs.
    job = export_job(project.root, args.run_id, args.fmt, quant=args.quant, dtype=args.dtype,
                     check=not args.no_check, check_limit=args.check_limit,
                     out_dir=args.out.resolve() if args.out else None)
    with project.lock("stillroom export"), stop_on_ctrl_c(job.stop):
        with Progress(TextColumn("[bold]export"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("export", total=None, info="")

            def on_event(event):
                if isinstance(event, events.ExportProgress):
                    bar.update(task, completed=event.done, total=event.total or None, info=event.stage)
                elif isinstance(event, events.Status):
                    bar.update(task, info=event.message)
            try:
                result = export_result(job.run(on_event))
            except Cancelled:
                err.print("export stopped; no partial file was left under a final name")
                return 130
    out = console()
    for path in result.paths:
        out.print(f"wrote {path}")
    if result.check:
        c = result.check
        out.print(f"GGUF check on {c['examples']} test rows ({c['metric']}): merged model {c['merged']:.3f} · "
                  f"GGUF {c['gguf']:.3f} · same answer on {c['agreement'] * 100:.0f}% of rows")
    if args.fmt == "ollama":
        out.print(f"create the Ollama model with: cd {result.paths[-1].parent} && "
                  f"ollama create {project.name} -f Modelfile")
    return 0
