"""Training in a child process (see core.child_process for the mechanism and why).

The parent runs `python -m stillroom.core.train_process PROJECT [--resume RUN] [--overrides JSON]`;
stopping sets the trainer's cancel event, so it saves a checkpoint and the run can be resumed. The result
is the TrainResult's fields as JSON. Nothing here imports torch: the child imports it through `core.train`.

Test seam (tests only; nothing else sets it): with `STILLROOM_TEST_HOLD_AT_STEP=N` in its environment the
child reports step N and then waits until it is stopped, so a test can stop a run at a known step
whatever the machine's speed.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

from .child_process import ChildProcess, ProcessFailed, event_from_json, event_to_json, jsonable, serve

__all__ = ["TrainProcess", "TrainProcessError", "event_from_json", "event_to_json"]

TrainProcessError = ProcessFailed
LOG_NAME = ".train-process.log"
HOLD_AT_STEP = "STILLROOM_TEST_HOLD_AT_STEP"   # the test seam in the docstring


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
        on_event = _held_at(os.environ.get(HOLD_AT_STEP), on_event, cancel)
        overrides = json.loads(args.overrides) if args.overrides else None
        return jsonable(train(Project.open(args.project), on_event=on_event, cancel=cancel,
                              resume=args.resume or None, overrides=overrides))
    return serve(job, nice=args.nice)


def _held_at(step: Optional[str], on_event, cancel):
    """`on_event`, which after reporting training step `step` waits for the stop (the test seam)."""
    if not step:
        return on_event
    from .events import TrainStep

    def held(event) -> None:
        on_event(event)
        if isinstance(event, TrainStep) and event.step == int(step):
            cancel.wait()
    return held


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
