"""Fixtures for the model screens (Train, Compare, Chat, Export): see modelscreens.py."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from modelscreens import add_run, configure, kept_rows  # noqa: E402
from stillroom.core.project import Project  # noqa: E402


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory):
    from tiny_models import build_tiny_llama
    return build_tiny_llama(tmp_path_factory.mktemp("student") / "tiny-llama")


@pytest.fixture
def project(tmp_path, tiny_student) -> Project:
    p = Project.create(tmp_path / "support-routing", demo=True)
    p.save_synthetic(kept_rows())
    return configure(p, tiny_student)


@pytest.fixture
def project_with_run(project, tiny_student) -> Project:
    add_run(project, tiny_student)
    return project
