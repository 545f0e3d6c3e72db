"""Killing a generation mid-run, at random moments and mid-write, as a power cut or an OOM killer would."""
import signal
import subprocess
import sys
import time

KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from fakes import FakeTeacher
from stillroom.core.generate import generate
from stillroom.core.project import Project
generate(Project.open({root!r}), {target}, teacher=FakeTeacher(delay=0.01, disagree_every=4))
"""


def _lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_mid_run(script, path, rng, *, rounds, grow=1):
    """Start the script, wait until it has appended `grow` more lines, let it run a random moment
    longer, SIGKILL it. Returns how many kills landed before the run finished on its own."""
    landed = 0
    for _ in range(rounds):
        proc = subprocess.Popen([sys.executable, "-c", script])
        start = _lines(path)
        deadline = time.time() + 60
        while _lines(path) < start + grow and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.25))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed += 1
        if rng.random() < 0.5:      # as a kill in the middle of a write would
            with open(path, "a") as handle:
                handle.write('{"id": "syn-torn", "status": "kep')
    return landed
