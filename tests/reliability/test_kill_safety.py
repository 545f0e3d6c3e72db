"""SIGKILL at random moments, repeated: nothing written is ever lost, torn or duplicated."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stillroom.core import records
from stillroom.core.config import load_config
from stillroom.core.project import Project
from test_generate import KILL_SCRIPT, kill_mid_run, make_project

TESTS = str(Path(__file__).resolve().parents[1])
# Kills per case: 20 by default; STILLROOM_KILLS lowers it for a quicker pass.
KILLS = int(os.environ.get("STILLROOM_KILLS", "20"))


def test_generation_killed_repeatedly_ends_with_exactly_n(tmp_path):
    project = make_project(tmp_path)
    target = 3 * KILLS + 20
    script = KILL_SCRIPT.format(tests=TESTS, root=str(project.root), target=target)
    landed = kill_mid_run(script, project.synthetic_path, random.Random(11), rounds=KILLS, grow=2)
    assert landed >= KILLS * 3 // 4
    subprocess.run([sys.executable, "-c", script], timeout=600, check=True)
    rows = [json.loads(line) for line in project.synthetic_path.read_text().splitlines()]
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == target
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({records.user_text(r) for r in kept}) == len(kept)


SAVE_LOOP = """
import sys
sys.path.insert(0, {tests!r})
from stillroom.core.project import Project
project = Project.open({root!r})
rows = project.synthetic()
i = 0
print("ready", flush=True)
while True:
    i += 1
    status = "pruned" if i % 2 else "kept"
    for row in rows:
        row["status"] = status
    project.save_synthetic(rows)
"""


def _kill_while_looping(script, rng, kills, check):
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check()


def test_review_save_killed_is_old_or_new_never_a_mix(tmp_path):
    project = make_project(tmp_path)
    rows = [{"id": f"syn-{i:06d}", "status": "kept", "reason": "", "scores": {}, "meta": {"pad": "x" * 300},
             "messages": records.make_row(f"row {i} " * 20, "billing")["messages"]} for i in range(2000)]
    project.save_synthetic(rows)

    def check():
        loaded = project.synthetic()          # parses: no torn line anywhere
        assert len(loaded) == len(rows)
        assert len({r["status"] for r in loaded}) == 1, "a mix of two versions"
        leftovers = [p.name for p in project.synthetic_path.parent.iterdir() if p.name != "synthetic.jsonl"]
        assert all(name.startswith(".synthetic.jsonl.") for name in leftovers)

    script = SAVE_LOOP.format(tests=TESTS, root=str(project.root))
    _kill_while_looping(script, random.Random(5), KILLS, check)


CONFIG_LOOP = """
from stillroom.core.project import Project
project = Project.open({root!r})
i = 0
print("ready", flush=True)
while True:
    i += 1
    project.config.task.description = ("A" if i % 2 else "B") * 5000
    project.config.training.epochs = 1.0 if i % 2 else 2.0
    project.save_config()
"""


def test_config_save_killed_is_old_or_new_never_a_mix(tmp_path):
    project = make_project(tmp_path)

    def check():
        config = load_config(project.config_path)    # always a whole, valid file
        description = config.task.description
        assert description in ("A" * 5000, "B" * 5000) or description == project.config.task.description
        if description == "A" * 5000:
            assert config.training.epochs == 1.0
        if description == "B" * 5000:
            assert config.training.epochs == 2.0

    script = CONFIG_LOOP.format(root=str(project.root))
    _kill_while_looping(script, random.Random(6), KILLS, check)
