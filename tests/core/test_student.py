import pytest

from stillroom.core import student
from stillroom.core.errors import ModelError
from stillroom.core.project import Project
from tiny import build_tiny_llama


def test_hf_folder_is_used_as_is_and_loads(tiny):
    assert student.student_folder(str(tiny)) == tiny
    model, tokenizer = student.load_student(str(tiny))
    assert tokenizer.chat_template and tokenizer.padding_side == "left"
    assert not model.training and str(model.device) == "cpu"
    import torch
    assert model.dtype == torch.float32
    _, train_tok = student.load_student(str(tiny), for_training=True)
    assert train_tok.padding_side == "right"


def test_relative_folder_resolves_against_project(tmp_path, tiny):
    import shutil
    project = Project.create(tmp_path / "proj", demo=True)
    shutil.copytree(tiny, project.root / "models" / "tiny")
    assert student.student_folder("models/tiny", project_dir=project.root) == project.root / "models" / "tiny"


def test_missing_chat_template_is_a_clear_error(tmp_path):
    folder = build_tiny_llama(tmp_path / "base", chat_template=None)
    with pytest.raises(ModelError, match="no chat template.*student.chat_template"):
        student.load_student(str(folder))
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    _, tokenizer = student.load_student(str(folder), chat_template=template)
    assert tokenizer.chat_template == template
    # The project's [student] chat_template is used when the caller passes none.
    project = Project.create(tmp_path / "proj", demo=True)
    project.config.student.chat_template = template
    project.config.student.model = str(folder)
    project.save_config()
    _, tokenizer = student.load_student(str(folder), project_dir=project.root)
    assert tokenizer.chat_template.strip() == template.strip()


def test_pickle_weights_refused(tmp_path, tiny):
    import shutil
    folder = tmp_path / "pickled"
    shutil.copytree(tiny, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="pickle"):
        student.load_student(str(folder))
    with pytest.raises(ModelError, match="pickle"):
        student.student_folder(str(tmp_path / "pickled" / "pytorch_model.bin"))


def test_trust_remote_code_warns(tiny):
    with pytest.warns(UserWarning, match="trust_remote_code"):
        student.load_student(str(tiny), trust_remote_code=True)


def test_server_is_not_a_student():
    with pytest.raises(ModelError, match="local model"):
        student.student_folder("openai:http://localhost:8080/v1")


@pytest.mark.slow
def test_bundled_gguf_converted_once_and_cached(tmp_path, monkeypatch):
    seen = []
    first = student.student_folder("bundled:smollm2-135m-instruct", on_event=seen.append)
    assert first.parent == student.students_cache()
    assert (first / "model.safetensors").exists() and (first / "tokenizer_config.json").exists()
    assert not [p for p in first.parent.iterdir() if ".partial" in p.name]
    conversions, again = [], []
    monkeypatch.setattr(student, "_convert_gguf", lambda *args: conversions.append(args))
    assert student.student_folder("bundled:smollm2-135m-instruct", on_event=again.append) == first
    assert conversions == [] and again == []          # a cache hit converts nothing and says nothing
    model, tokenizer = student.load_student("bundled:smollm2-135m-instruct")
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert getattr(model.config, "quantization_config", None) is None
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.rstrip().endswith("assistant")


def test_partial_conversion_folder_is_not_taken_for_a_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("STILLROOM_CACHE_DIR", str(tmp_path / "cache"))
    half = tmp_path / "cache" / "students" / "abc"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")
    assert not student._complete(half)
