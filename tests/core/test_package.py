"""The package as users get it: light imports, a wheel that holds every subpackage, the CLI's errors."""
import subprocess
import sys
import zipfile

import pytest

from clitools import REPO, heavy_modules_after_importing, run_cli

ENGINE = ("torch", "transformers", "peft", "accelerate", "llama_cpp")
UI = ("textual", "rich")


@pytest.mark.parametrize("modules, heavy", [
    # The engine never imports a UI library, and loads model libraries only when a job needs them.
    (("stillroom.core", "stillroom.core.project", "stillroom.core.generate", "stillroom.core.records",
      "stillroom.core.config", "stillroom.core.quality", "stillroom.core.prompts", "stillroom.core.train",
      "stillroom.core.student", "stillroom.core.runs", "stillroom.core.sft_data", "stillroom.core.device",
      "stillroom.core.evaluate", "stillroom.core.jobs", "stillroom.core.job_kinds", "stillroom.core.chat",
      "stillroom.core.compare"), ENGINE + UI),
    # `stillroom --help` and the commands' parsers load no model and no UI library.
    (("stillroom.tui.cli", "stillroom.tui.commands.train"), ENGINE + ("textual",)),
])
def test_imports_stay_light(modules, heavy):
    assert heavy_modules_after_importing(*modules, heavy=heavy) == "none"


def test_building_the_parser_stays_light():
    code = ("import sys; from stillroom.tui.cli import build_parser; build_parser(); "
            f"print(' '.join(m for m in {ENGINE + ('textual',)!r} if m in sys.modules) or 'none')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "none"


def test_help_builds_no_command_arguments():
    # A command's arguments may import the engine's settings (init's task types); `stillroom --help`
    # builds only the list of commands, and one command only its own arguments.
    code = ("import sys\nfrom stillroom.tui.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('config' if 'stillroom.core.config' in sys.modules else 'none', file=sys.stderr)")
    def loaded(*argv):
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                              check=True).stderr.split()[-1]
    assert loaded("--help") == "none"
    assert loaded("train", "--help") == "none"
    assert loaded("init", "--help") == "config"           # init's --task-type lists the task types


def test_wheel_contains_every_subpackage(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("stillroom-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for folder in ("core", "tui", "themes"):
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO / folder).parent
            pkg = "/".join(["stillroom", folder, *rel.parts])
            assert f"{pkg}/__init__.py" in names, f"{pkg} missing from the wheel: list it in pyproject"
    assert "stillroom/core/demo/seeds.jsonl" in names
    assert "stillroom/core/demo/test.jsonl" in names


def test_cli_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "p"
    bad.mkdir()
    (bad / "stillroom.toml").write_text('[training]\nepochs = "x"\n')
    result = run_cli("generate", bad, "--count", "3")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "stillroom.toml:2: training.epochs must be a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_import_export_data_cli(tmp_path):
    project = tmp_path / "p"
    assert run_cli("init", project, "--task-type", "qa").returncode == 0
    csv = tmp_path / "rows.csv"
    csv.write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n")
    result = run_cli("import", csv, "--into", project, "--input-column", "question", "--output-column", "answer")
    assert result.returncode == 0, result.stderr
    assert "imported 2 row(s)" in result.stdout
    result = run_cli("export-data", project, "--format", "alpaca", "-o", tmp_path / "out.jsonl")
    assert result.returncode == 0, result.stderr
    assert '"output": "Paris"' in (tmp_path / "out.jsonl").read_text()
    again = run_cli("init", project)
    assert again.returncode == 2 and "already exists" in again.stderr
