"""Every GGUF opens through one loader, which turns llama.cpp's weight repacking off on AMX CPUs."""
import re
from pathlib import Path

import pytest

from stillroom.core.backends import llamacpp_load
from stillroom.core.backends.llamacpp_load import has_amx, repack_enabled

REPO = Path(__file__).resolve().parents[2]

AMX_INFO = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | "
            "AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |")
AVX2_INFO = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | OPENMP = 1 | REPACK = 1 |"


def test_auto_turns_repacking_off_where_llama_cpp_reports_amx():
    assert has_amx(AMX_INFO) and not has_amx(AVX2_INFO)
    assert repack_enabled("auto", AMX_INFO) is False
    assert repack_enabled("auto", AVX2_INFO) is True
    assert repack_enabled("auto", AVX2_INFO.replace("AVX2 = 1", "AMX_INT8 = 0")) is True


def test_on_and_off_override_the_cpu():
    assert repack_enabled("on", AMX_INFO) is True
    assert repack_enabled("off", AVX2_INFO) is False
    with pytest.raises(ValueError, match="cpu_repack"):
        repack_enabled("sometimes", AVX2_INFO)


def test_auto_reads_llama_cpp_system_info(monkeypatch):
    monkeypatch.setattr(llamacpp_load, "system_info", lambda: AMX_INFO)
    assert repack_enabled("auto") is False
    monkeypatch.setattr(llamacpp_load, "system_info", lambda: AVX2_INFO)
    assert repack_enabled("auto") is True


def test_real_system_info_is_llama_cpps_report():
    info = llamacpp_load.system_info()
    assert "CPU" in info and " = 1" in info


@pytest.mark.parametrize("setting, expected", [("on", True), ("off", False)])
def test_open_gguf_sets_extra_buffer_types(setting, expected):
    from stillroom.core.models import bundled_path
    llm = llamacpp_load.open_gguf(bundled_path("smollm2-135m-instruct"), cpu_repack=setting,
                                  vocab_only=True, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is expected
    finally:
        llm.close()
    import llama_cpp.llama_cpp as lc
    assert lc.llama_model_default_params().use_extra_bufts is True     # the wrapper is gone again


def test_no_code_constructs_llama_outside_the_loader():
    pattern = re.compile(r"\bLlama\(|llama_model_load_from_file|llama_load_model_from_file|"
                         r"-m\", \"llama_cpp\.server\"")
    offenders = []
    for folder in ("core", "tui", "bench", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name in ("llamacpp_load.py", Path(__file__).name):
                continue
            for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.slow
def test_every_runtime_load_goes_through_the_loader(tmp_path, monkeypatch):
    """The teacher (single and batched paths) and its label scorer: each Llama is built inside
    load_settings, with the project's setting."""
    import llama_cpp
    from stillroom.core.backends import load_teacher
    from stillroom.core.backends.base import SamplingParams
    from stillroom.core.project import Project

    built = []
    original = llama_cpp.Llama.__init__

    def recording_init(self, *args, **kwargs):
        built.append(llamacpp_load._params_lock.locked())
        original(self, *args, **kwargs)

    monkeypatch.setattr(llama_cpp.Llama, "__init__", recording_init)
    project = Project.create(tmp_path / "p", "classification", demo=True)
    project.config.teacher.model = "bundled:smollm2-135m-instruct"
    project.config.teacher.cpu_repack = "off"
    project.config.teacher.max_in_flight = 2
    project.config.teacher.n_ctx = 512
    teacher = load_teacher(project)
    try:
        assert teacher.llm.model_params.use_extra_bufts is False
        teacher.complete_batch(["Hello", "Hi"], SamplingParams(max_tokens=2, temperature=0))
        teacher.score_continuations("The sky is", [" blue", " green"])
        assert teacher._scorer.model_params.use_extra_bufts is False
    finally:
        teacher.close()
    assert built == [True, True]
