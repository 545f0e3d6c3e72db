"""End to end on the bundled teacher: a demo project and a short generation through the real CLI."""
import json

import pytest

from clitools import run_cli

pytestmark = pytest.mark.slow


def test_demo_init_and_generate_with_bundled_teacher(tmp_path):
    project = tmp_path / "demo"
    result = run_cli("init", project, "--demo")
    assert result.returncode == 0, result.stderr
    assert "24 seeds, 64 test rows" in result.stdout
    result = run_cli("generate", project, "--count", "6", timeout=900)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (project / "data" / "synthetic.jsonl").read_text().splitlines()]
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == 6
    labels = {"billing", "shipping", "technical", "account"}
    for row in kept:
        assert row["messages"][-1]["content"] in labels
        assert row["meta"]["teacher"] == "gemma-3-270m"
        assert row["meta"]["teacher_label"] == row["meta"]["intended_label"]
    for row in rows:
        if row["status"] == "rejected":
            assert row["reason"]
    assert "done: 6/6 kept" in result.stdout
