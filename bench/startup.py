"""Start-up time: `stillroom --help` and the first frame of the workbench, against importing Textual.

Each measurement is a fresh Python process, timed from outside, median of several runs:
  * yardstick: `python -c "import textual.app"` (no app can show a frame faster than this import);
  * `python -m stillroom.tui --help` (what the `stillroom` command runs);
  * first frame: a process that builds the app with `make_app(<demo project>)`, runs it headless
    (`App.run_test()`), waits until the first screen is composed and mounted, and exits.
Data and config folders point into a temporary folder, so nothing of the user's is read or written.

    python bench/startup.py [--runs 7]

Ends with: RATIOS startup: help_vs_import=<ratio> first_frame_vs_import=<ratio> ...
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401
from _common import machine, median, ratios

FIRST_FRAME = """
import asyncio, sys
from stillroom.tui.app import make_app
async def main():
    app = make_app(sys.argv[1])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
asyncio.run(main())
"""


def timed_run(cmd, env) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])}... failed: {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stillroom-bench-startup-"))
    env = dict(os.environ, STILLROOM_DATA_DIR=str(tmp / "data"), STILLROOM_CONFIG_DIR=str(tmp / "config"))
    from stillroom.core.project import Project
    project = Project.create(tmp / "demo", demo=True)
    print(f"machine: {machine()}; {args.runs} runs each, median", flush=True)
    # one unmeasured run of each warms the OS file cache and Python's bytecode caches
    cmds = {"import textual.app": [sys.executable, "-c", "import textual.app"],
            "stillroom --help": [sys.executable, "-m", "stillroom.tui", "--help"],
            "first frame": [sys.executable, "-c", FIRST_FRAME, str(project.root)]}
    walls = {name: [] for name in cmds}
    cpus = {name: [] for name in cmds}
    for name, cmd in cmds.items():
        timed_run(cmd, env)
    for _ in range(args.runs):
        for name, cmd in cmds.items():   # interleaved, so load changes hit all three alike
            wall, cpu = timed_run(cmd, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    for name in cmds:
        w, c = walls[name], cpus[name]
        print(f"{name:20s}: median {median(w) * 1000:6.0f} ms wall (min {min(w) * 1000:.0f}, max "
              f"{max(w) * 1000:.0f}); median {median(c) * 1000:6.0f} ms CPU", flush=True)
    base, base_cpu = median(walls["import textual.app"]), median(cpus["import textual.app"])
    ratios("startup", help_vs_import=median(walls["stillroom --help"]) / base,
           first_frame_vs_import=median(walls["first frame"]) / base,
           help_vs_import_cpu=median(cpus["stillroom --help"]) / base_cpu,
           first_frame_vs_import_cpu=median(cpus["first frame"]) / base_cpu,
           import_ms=base * 1000, help_ms=median(walls["stillroom --help"]) * 1000,
           first_frame_ms=median(walls["first frame"]) * 1000)


if __name__ == "__main__":
    main()
