"""Two training processes on the CPU with Trainer's distributed data parallel (gloo), the way a
multi-GPU machine runs it:

    torchrun --standalone --nproc_per_node 2 -m stillroom.tui train PATH          (CPU or GPUs)
    accelerate launch --multi_gpu --num_processes 2 -m stillroom.tui train PATH   (GPUs)

(`accelerate launch --cpu` starts several CPU processes only through mpirun, hence torchrun here.)
"""
import json
import os
import subprocess
import sys

import pytest

from clitools import REPO
from stillroom.core.project import Project
from stillroom.core.runs import list_runs, read_metrics
from tiny import build_tiny_llama

pytestmark = pytest.mark.slow


def test_two_cpu_processes_train_one_run(tmp_path):
    tiny = build_tiny_llama(tmp_path / "tiny")
    project = Project.create(tmp_path / "proj", demo=True)
    project.config.student.model = str(tiny)
    t = project.config.training
    t.logging_steps, t.eval_steps, t.save_steps, t.batch_size, t.max_length = 1, 2, 2, 4, 384
    t.lora_rank, t.lora_alpha = 4, 8
    project.save_config()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "stillroom.tui", "train", str(project.root), "--max-steps", "4"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "× 2 processes" in result.stderr
    [run] = list_runs(project)                 # one run folder: rank 0 named it, rank 1 joined it
    assert run.status == "finished" and run.step == run.max_steps == 4
    config = json.loads((run.path / "config.json").read_text())
    assert config["world_size"] == 2
    # Each optimizer step saw both processes' batches: 2 x 4 rows per step.
    metrics = read_metrics(run.path)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    train_rows = config["data"]["train_rows"]
    assert metrics[0]["epoch"] == pytest.approx(1 / -(-train_rows // 8), abs=0.01)
    assert (run.path / "adapter" / "adapter_model.safetensors").exists()
    assert not [p for p in run.path.iterdir() if p.name.startswith(".")]
