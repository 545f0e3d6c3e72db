import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workbench import synthetic_rows  # noqa: E402
from stillroom.core.project import Project  # noqa: E402


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def demo(tmp_path):
    return Project.create(tmp_path / "support-routing", demo=True)


@pytest.fixture
def demo_with_rows(demo):
    demo.save_synthetic(synthetic_rows())
    return demo
