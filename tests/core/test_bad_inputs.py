"""The bad-input corpus (tests/core/data/bad): every case gives one line naming the file and line or key and
what was expected, exit status 2, no traceback, and leaves the project exactly as it was."""
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest

from clitools import run_cli
from stillroom.core import records
from stillroom.core.project import Project

BAD = Path(__file__).parent / "data" / "bad"


@pytest.fixture
def project(tmp_path):
    project = Project.create(tmp_path / "proj", "classification")
    project.config.task.labels = ["billing", "shipping"]
    project.save_config()
    project.save_seeds([records.make_row(f"seed {i} about {label}", label)
                        for i, label in enumerate(["billing", "shipping"] * 3)])
    return project.root


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".stillroom.lock"}


def expect_error(root, args, *fragments):
    before = snapshot(root)
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("stillroom: error: ")
    for fragment in fragments:
        assert fragment in message, message
    assert snapshot(root) == before, "a failed command changed the project"
    return message


# ---------------------------------------------------------------- JSONL examples (imported)

JSONL_CASES = {
    "truncated_line.jsonl": "truncated_line.jsonl:2: invalid JSON",
    "wrong_types.jsonl": "wrong_types.jsonl:2: \"messages\" must be a non-empty list",
    "missing_role.jsonl": "missing_role.jsonl:2: messages[0] has no \"role\"",
    "unknown_role.jsonl": "unknown_role.jsonl:2: messages[0].role is 'customer'; expected system, user or assistant",
    "wrong_role_order.jsonl": "wrong_role_order.jsonl:2: expected a user message first",
    "empty_content.jsonl": "empty_content.jsonl:2: messages[0] (user) has empty content",
    "number_content.jsonl": "number_content.jsonl:2: messages[1].content must be a string, got int",
    "not_an_object.jsonl": "not_an_object.jsonl:2: expected a JSON object",
    "binary_garbage.jsonl": "binary_garbage.jsonl:1: binary data, expected UTF-8 JSON lines",
    "non_utf8.jsonl": "non_utf8.jsonl:2: not UTF-8",
    "alpaca_missing_output.jsonl": "alpaca_missing_output.jsonl:1: Alpaca row is missing \"output\"",
    "sharegpt_unknown_speaker.jsonl": "sharegpt_unknown_speaker.jsonl:1: conversations[0].from is 'alien'",
    "broken_quoting.csv": "broken_quoting.csv:",
    "missing_columns.csv": "missing_columns.csv:1: missing column(s) input, output; the header has id, body, team",
}


@pytest.mark.parametrize("name", sorted(JSONL_CASES))
def test_bad_example_file_on_import(project, name):
    expect_error(project, ["import", BAD / name, "--into", project], JSONL_CASES[name])


MESSAGES_CASES = [n for n in sorted(JSONL_CASES)
                  if n.endswith(".jsonl") and "alpaca" not in n and "sharegpt" not in n]


@pytest.mark.parametrize("name", MESSAGES_CASES)
def test_bad_seeds_file_on_generate(project, name):
    shutil.copy(BAD / name, project / "seeds.jsonl")
    expect_error(project, ["generate", project, "--count", "1"], f"seeds.jsonl:{JSONL_CASES[name].split(':', 1)[1]}")


def test_ten_megabyte_line(project, tmp_path):
    path = tmp_path / "huge.jsonl"
    row = {"messages": [{"role": "user", "content": "x" * (10 << 20)}, {"role": "assistant", "content": "b"}]}
    path.write_text(json.dumps(row) + "\n")
    expect_error(project, ["import", path, "--into", project], "huge.jsonl:1: line is 10,485,8",
                 "an example may be at most 1,048,576 bytes")


@pytest.mark.parametrize("name", ["ok_bom.jsonl", "ok_crlf.jsonl"])
def test_bom_and_crlf_are_read_not_refused(project, name):
    # A BOM or Windows line ends are harmless encodings of good rows: they import cleanly.
    result = run_cli("import", BAD / name, "--into", project)
    assert result.returncode == 0, result.stderr
    assert "imported 1 row(s)" in result.stdout


def test_bad_test_file(project):
    shutil.copy(BAD / "unknown_role.jsonl", project / "test.jsonl")
    expect_error(project, ["generate", project, "--count", "1"], "test.jsonl:2: messages[0].role is 'customer'")


def test_seed_label_outside_label_set(project):
    rows = records.read_jsonl(project / "seeds.jsonl") + [records.make_row("my screen is black", "technical")]
    Project.open(project).save_seeds(rows)
    expect_error(project, ["generate", project, "--count", "1"], "seeds.jsonl: seed answer(s) 'technical' are "
                 "not in task.labels (billing, shipping)")


def test_empty_seeds(project):
    (project / "seeds.jsonl").write_text("")
    expect_error(project, ["generate", project, "--count", "1"], "seeds.jsonl: 0 usable seed example(s)")


# ---------------------------------------------------------------- TOML config

TOML_CASES = {
    "syntax_error.toml": "stillroom.toml:",
    "unknown_key.toml": "stillroom.toml:6: unknown key training.batchsize; expected one of",
    "wrong_type.toml": "stillroom.toml:5: training.epochs must be a number, got str 'three'",
    "empty_label_set.toml": "stillroom.toml:3: task.labels must list at least two labels",
    "negative_count.toml": "stillroom.toml:5: training.batch_size must be at least 1, got -4",
    "zero_count.toml": "stillroom.toml:5: generation.few_shot must be at least 1, got 0",
    "unknown_task_type.toml": "stillroom.toml:2: task.type must be one of classification, extraction, qa, "
                              "generation, got 'summarise'",
    "duplicate_labels.toml": "stillroom.toml:2: task.labels has duplicates",
    "unknown_section.toml": "stillroom.toml:1: unknown section [tasks]",
}


@pytest.mark.parametrize("name", sorted(TOML_CASES))
def test_bad_config(project, name):
    shutil.copy(BAD / name, project / "stillroom.toml")
    expect_error(project, ["generate", project, "--count", "1"], TOML_CASES[name])


def test_invalid_toml_says_invalid(project):
    shutil.copy(BAD / "syntax_error.toml", project / "stillroom.toml")
    expect_error(project, ["generate", project, "--count", "1"], "invalid TOML")


def test_non_positive_generate_count(project):
    expect_error(project, ["generate", project, "--count", "0"], "--count must be at least 1, got 0")


# ---------------------------------------------------------------- models

def set_teacher(root: Path, value: str) -> None:
    project = Project.open(root)
    project.config.teacher.model = value
    project.save_config()


def test_missing_model_path(project):
    set_teacher(project, "/nowhere/model.gguf")
    expect_error(project, ["generate", project, "--count", "1"], "/nowhere/model.gguf: model not found",
                 "bundled:gemma-3-270m")


def test_model_folder_without_config(project, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"")
    set_teacher(project, str(folder))
    expect_error(project, ["generate", project, "--count", "1"], "folder has no config.json")


def test_truncated_gguf(project):
    set_teacher(project, str(BAD / "truncated.gguf"))
    expect_error(project, ["generate", project, "--count", "1"], "truncated.gguf: GGUF file is truncated")


def test_text_file_named_gguf(project):
    set_teacher(project, str(BAD / "text_file.gguf"))
    expect_error(project, ["generate", project, "--count", "1"], "text_file.gguf: not a GGUF file")


def test_relative_model_path_outside_project(project):
    set_teacher(project, "../../elsewhere/model.gguf")
    expect_error(project, ["generate", project, "--count", "1"], "points outside the project folder")


class _Exploit:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("suffix", [".bin", ".pt"])
def test_pickle_weights_refused_never_unpickled(project, tmp_path, suffix):
    marker = tmp_path / "pwned"
    weights = tmp_path / f"model{suffix}"
    weights.write_bytes(pickle.dumps(_Exploit(str(marker))))
    set_teacher(project, str(weights))
    expect_error(project, ["generate", project, "--count", "1"], f"model{suffix}: pickle weights can run code")
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    shutil.copy(weights, folder / f"pytorch_model{suffix}")
    set_teacher(project, str(folder))
    expect_error(project, ["generate", project, "--count", "1"], "weights are in pickle format")
    assert not marker.exists()
