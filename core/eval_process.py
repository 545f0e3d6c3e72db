"""Evaluation in a child process (see core.child_process for the mechanism and why).

The parent runs `python -m stillroom.core.eval_process PROJECT [--run RUN] [--limit N]`; the child
loads the students and the configured teacher itself and streams `Status`, `EvalProgress` and
`EvalFinished` events. Stopping sets the evaluation's cancel event: it raises `Cancelled` before
anything is written, and the files of a finished evaluation are each written whole (atomically), so a
stopped evaluation leaves the run's previous results as they were. `evaluate()` returns the EvalResult,
read back from disk.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from . import events as ev
from .child_process import ChildProcess, serve


class EvalProcess(ChildProcess):
    """One evaluation of a run in a child process; call `evaluate()` in a thread, `stop()` from anywhere."""

    module = "stillroom.core.eval_process"
    what = "evaluation"
    log_name = ".eval-process.log"

    def __init__(self, project_root: Path | str, run: Optional[str] = None, *, limit: Optional[int] = None,
                 **kwargs):
        super().__init__(project_root, **kwargs)
        self.run_id = run
        self.limit = limit

    def arguments(self) -> list[str]:
        args = [str(self.project_root)]
        if self.run_id:
            args += ["--run", self.run_id]
        if self.limit:
            args += ["--limit", str(self.limit)]
        return args

    def evaluate(self, on_event: ev.EventSink = ev.ignore):
        """Run to the end and return the EvalResult (or raise the child's failure)."""
        from .evaluate import read_eval
        from .project import Project
        result = self.run(on_event)
        return read_eval(Project.open(self.project_root), result["run_id"])


def _child(argv: list[str]) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m stillroom.core.eval_process")
    parser.add_argument("project")
    parser.add_argument("--run", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)

    def job(on_event, cancel) -> dict:
        from .evaluate import evaluate
        from .project import Project
        result = evaluate(Project.open(args.project), args.run, on_event=on_event, cancel=cancel,
                          limit=args.limit)
        return {"run_id": result.run_id, "eval_dir": str(result.eval_dir)}
    return serve(job, nice=args.nice)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
