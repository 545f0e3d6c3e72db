import os
import sys
from pathlib import Path

import pytest

# Tests never touch the user's real folders, and never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_CACHE = Path(os.environ.get("STILLROOM_TEST_CACHE", Path.home() / ".cache" / "stillroom-tests"))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    # The model cache is shared between tests (assembling / converting models is slow);
    # data and config folders are per test.
    monkeypatch.setenv("STILLROOM_DATA_DIR", str(tmp_path / "data-home"))
    monkeypatch.setenv("STILLROOM_CONFIG_DIR", str(tmp_path / "config-home"))
    monkeypatch.setenv("STILLROOM_CACHE_DIR", str(SHARED_CACHE))
    yield


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run the real `stillroom` CLI in a subprocess; returns CompletedProcess."""
    import subprocess
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "stillroom.tui", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
