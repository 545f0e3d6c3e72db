"""Shared test helpers, under a name no other test folder uses (every folder has its own conftest)."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_CACHE = Path(os.environ.get("STILLROOM_TEST_CACHE", Path.home() / ".cache" / "stillroom-tests"))


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run the real `stillroom` CLI in a subprocess; returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "stillroom.tui", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def heavy_modules_after_importing(*modules: str,
                                  heavy=("torch", "transformers", "llama_cpp", "textual", "rich")) -> str:
    """Which of `heavy` a fresh interpreter has loaded after importing `modules` ("none" if none)."""
    code = (f"import sys; import {', '.join(modules)}; "
            f"print(' '.join(m for m in {tuple(heavy)!r} if m in sys.modules) or 'none')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()
