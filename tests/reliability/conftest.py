"""The reliability tests drive the workbench as the TUI tests do, with the same pilot helpers."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))   # workbench.py: wait_for, task_ready
