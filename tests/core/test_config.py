import pytest

from stillroom.core.config import ProjectConfig, parse_config, render_toml
from stillroom.core.errors import ConfigError
from stillroom.core.project import Project


def test_rendered_default_round_trips_and_documents_every_key():
    config = ProjectConfig()
    config.task.labels = ["a", "b"]
    text = render_toml(config)
    again = parse_config(text)
    assert again == config
    # every key has a comment line right above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), line


@pytest.mark.parametrize("task_type", ["classification", "extraction", "qa", "generation"])
def test_init_writes_a_loadable_config(tmp_path, task_type):
    project = Project.create(tmp_path / "p", task_type)
    assert Project.open(project.root).config.task.type == task_type
    assert project.seeds_path.read_text() == ""


def _error(text):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "proj/stillroom.toml")
    return str(info.value)


def test_unknown_key_names_key_and_line():
    msg = _error('[task]\nlabels = ["a", "b"]\n\n[training]\nepochs = 2\nbatchsize = 4\n')
    assert msg.startswith("proj/stillroom.toml:6: unknown key training.batchsize")
    assert "batch_size" in msg


def test_wrong_type_names_key_and_line():
    msg = _error('[task]\nlabels = ["a", "b"]\n[training]\nepochs = "three"\n')
    assert msg.startswith("proj/stillroom.toml:4: training.epochs must be a number")


def test_syntax_error_has_line():
    msg = _error('[task]\nlabels = ["a", "b"\n')
    assert msg.startswith("proj/stillroom.toml:")
    assert "invalid TOML" in msg


def test_unknown_section():
    assert "unknown section [trainer]" in _error('[trainer]\nx = 1\n')


def test_empty_label_set_is_an_error():
    msg = _error('[task]\ntype = "classification"\nlabels = []\n')
    assert msg.startswith("proj/stillroom.toml:3: task.labels must list at least two labels")


def test_unknown_task_type():
    msg = _error('[task]\ntype = "summarise"\n')
    assert "task.type must be one of classification, extraction, qa, generation" in msg
    assert msg.startswith("proj/stillroom.toml:2:")


@pytest.mark.parametrize("key,value", [("batch_size", 0), ("epochs", -1), ("lora_rank", 0)])
def test_non_positive_counts(key, value):
    msg = _error(f'[task]\nlabels = ["a", "b"]\n[training]\n{key} = {value}\n')
    assert msg.startswith("proj/stillroom.toml:4: training." + key)


def test_bad_json_schema():
    msg = _error('[task]\ntype = "extraction"\njson_schema = "{oops"\n')
    assert msg.startswith("proj/stillroom.toml:3: task.json_schema is not valid JSON")


def test_config_path_outside_project_refused(tmp_path):
    project = Project.create(tmp_path / "p", "qa")
    with pytest.raises(ConfigError, match="points outside the project folder"):
        project.resolve_path("../../etc", "data_dir")
    assert project.resolve_path("data", "data_dir") == (project.root / "data").resolve()
