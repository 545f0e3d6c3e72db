"""Training in a child process (see core.child_process for the mechanism and why).

The parent runs `python -m stillroom.core.train_process PROJECT [--resume RUN] [--overrides JSON]`;
stopping sets the trainer's cancel event, so it saves a checkpoint and the run can be resumed. The result
is the TrainResult's fields as JSON. Nothing here imports torch: the child imports it through `core.train`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from .child_process import ChildProcess, ProcessFailed, event_from_json, event_to_json, jsonable, serve

__all__ = ["TrainProcess", "TrainProcessError", "event_from_json", "event_to_json"]

TrainProcessError = ProcessFailed
LOG_NAME = ".train-process.log"


class TrainProcess(ChildProcess):
    """One training run in a child process; iterate `events()` in a thread, call `stop()` from anywhere."""

    module = "stillroom.core.train_process"
    what = "training"
    log_name = LOG_NAME

    def __init__(self, project_root: Path | str, *, resume: Optional[str] = None,
                 overrides: Optional[dict] = None, **kwargs):
        super().__init__(project_root, **kwargs)
        self.resume = resume
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}

    def arguments(self) -> list[str]:
        args = [str(self.project_root)]
        if self.resume:
            args += ["--resume", str(self.resume)]
        if self.overrides:
            args += ["--overrides", json.dumps(self.overrides)]
        return args


def _child(argv: list[str]) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m stillroom.core.train_process")
    parser.add_argument("project")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--overrides", default=None)
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)

    def job(on_event, cancel) -> dict:
        from .project import Project
        from .train import train
        overrides = json.loads(args.overrides) if args.overrides else None
        return jsonable(train(Project.open(args.project), on_event=on_event, cancel=cancel,
                              resume=args.resume or None, overrides=overrides))
    return serve(job, nice=args.nice)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
