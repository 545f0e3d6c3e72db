"""stillroom export PATH [--run RUN] --format adapter|merged|gguf|ollama: the files a user deploys."""
from __future__ import annotations

from pathlib import Path

from stillroom.tui.commands.common import add_project_and_run, console, stop_on_ctrl_c

NAME = "export"
HELP = ("export a run as a LoRA adapter, merged safetensors, GGUFs for llama.cpp in one or more quant types "
        "(each checked on the test set against the merged model, in a table) or an Ollama Modelfile, into "
        "exports/<run-id>/")
QUANT_HELP = ("gguf/ollama: GGUF type(s), comma-separated or repeated, from q4_k_m (the default), q5_k_m, q6_k, "
              "q8_0, f16; the Modelfile uses the first")


def add_arguments(parser) -> None:
    add_project_and_run(parser)
    parser.add_argument("--format", "-f", dest="fmt", required=True,
                        choices=("adapter", "merged", "gguf", "ollama"), help="what to write")
    parser.add_argument("--quant", action="append", default=None, metavar="TYPE[,TYPE]", help=QUANT_HELP)
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="merged weights' precision (auto: the student's own)")
    parser.add_argument("--no-check", action="store_true",
                        help="gguf/ollama: skip running the test set through each GGUF (and the quant table)")
    parser.add_argument("--check-limit", type=int, default=None, metavar="N",
                        help="gguf/ollama: check on the first N test rows (default: evaluation.max_examples, 0 = all)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: exports/<run-id>/)")


def run(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from stillroom.core import events
    from stillroom.core.errors import Cancelled
    from stillroom.core.export import parse_quants
    from stillroom.core.job_kinds import export_job, export_result
    from stillroom.core.project import Project
    from stillroom.tui.format import quant_table

    quants = parse_quants(args.quant)        # an unknown type is a one-line error before anything runs
    project = Project.open(args.path)
    err = console(stderr=True)
    # The merge, the conversion and the GGUF check (llama.cpp) run in a child process: see core.jobs.
    job = export_job(project.root, args.run_id, args.fmt, quant=list(quants), dtype=args.dtype,
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
    if result.quants:
        out.print(quant_table(result.quants))
        out.print(f"(also in {result.paths[0].parent / 'quants.md'})")
    if args.fmt == "ollama":
        out.print(f"create the Ollama model with: cd {result.paths[-1].parent} && "
                  f"ollama create {project.name} -f Modelfile")
    return 0

