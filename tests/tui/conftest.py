"""Fixtures for the TUI tests: the demo project (with generated rows) for the workbench screens, and a
project whose student is the tiny Llama, with a finished run, for the model screens."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))   # workbench.py and modelscreens.py

from modelscreens import add_run, configure, kept_rows  # noqa: E402
from workbench import synthetic_rows  # noqa: E402
from stillroom.core.project import Project  # noqa: E402


@pytest.fixture
def demo(tmp_path):
    return Project.create(tmp_path / "support-routing", demo=True)


@pytest.fixture
def demo_with_rows(demo):
    demo.save_synthetic(synthetic_rows())
    return demo


@pytest.fixture
def project(tmp_path, tiny) -> Project:
    p = Project.create(tmp_path / "support-routing", demo=True)
    p.save_synthetic(kept_rows())
    return configure(p, tiny)


@pytest.fixture
def project_with_run(project, tiny) -> Project:
    add_run(project, tiny)
    return project
