"""Fixtures every level shares: isolated user folders, the anyio backend, the tiny Llama.
Each level (core, tui, reliability) adds its own in its conftest."""
import os
import sys
from pathlib import Path

import pytest

# Tests never touch the user's real folders, and never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clitools import SHARED_CACHE  # noqa: E402


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny random Llama with a toy tokenizer: read only, so the whole session shares one."""
    from tiny import build_tiny_llama
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    # The model cache is shared between tests (assembling / converting models is slow);
    # data and config folders are per test.
    monkeypatch.setenv("STILLROOM_DATA_DIR", str(tmp_path / "data-home"))
    monkeypatch.setenv("STILLROOM_CONFIG_DIR", str(tmp_path / "config-home"))
    monkeypatch.setenv("STILLROOM_CACHE_DIR", str(SHARED_CACHE))
    yield


@pytest.fixture(scope="session", autouse=True)
def snapshot_report_in_tmp(request, tmp_path_factory):
    """pytest-textual-snapshot writes its failure report (snapshot_report.html) to the working folder
    unless told where: it goes with this run's temporary files, unless --snapshot-report names a place.
    (The reference snapshots in __snapshots__ are only written by --snapshot-update.)"""
    option = request.config.option
    if getattr(option, "snapshot_report", None) == "snapshot_report.html":
        option.snapshot_report = str(tmp_path_factory.getbasetemp() / "snapshot_report.html")
