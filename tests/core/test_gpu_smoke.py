"""bench/gpu_smoke.py without CUDA: one line saying it skipped, exit 0, nothing run."""
import subprocess
import sys

import pytest

from clitools import REPO


def test_gpu_smoke_skips_cleanly_without_cuda(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the smoke run itself: python bench/gpu_smoke.py")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_smoke.py"), "--keep", str(tmp_path / "p")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "skipped: no CUDA"
    assert not (tmp_path / "p").exists()
