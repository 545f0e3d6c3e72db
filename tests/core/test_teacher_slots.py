"""teacher.max_in_flight = 0 (auto, the default): generation gets the batched llama.cpp engine with as many
slots as the model's KV cache allows on the machine; chat and evaluation keep the single path; a server
gets one request at a time."""
import pytest

from stillroom.core.backends.llamacpp_batch import auto_slots, kv_bytes_per_token
from stillroom.core.config import ProjectConfig
from stillroom.core.generate import Generator
from stillroom.core.project import Project

from fakes import FakeTeacher

GIB = 1024 ** 3
GEMMA_270M = {"general.architecture": "gemma3", "gemma3.block_count": "18", "gemma3.attention.head_count": "4",
              "gemma3.attention.head_count_kv": "1", "gemma3.embedding_length": "640",
              "gemma3.attention.key_length": "256", "gemma3.attention.value_length": "256"}
LLAMA_8B = {"general.architecture": "llama", "llama.block_count": "32", "llama.attention.head_count": "32",
            "llama.attention.head_count_kv": "8", "llama.embedding_length": "4096"}


def test_kv_bytes_per_token_from_the_gguf_metadata():
    assert kv_bytes_per_token(GEMMA_270M) == 18 * 1 * (256 + 256) * 2
    assert kv_bytes_per_token(LLAMA_8B) == 32 * 8 * (128 + 128) * 2        # head size from the embedding
    assert kv_bytes_per_token({"general.architecture": "x"}) == 0


@pytest.mark.parametrize("metadata, n_ctx, memory, slots", [
    (GEMMA_270M, 2048, 24 * GIB, 8),       # 16 sequences of 2,048 tokens: 604 MB
    (GEMMA_270M, 8192, 24 * GIB, 4),       # a longer context halves it to stay under 2 GiB
    (LLAMA_8B, 2048, 24 * GIB, 4),         # 128 KiB a token: 8 sequences of 2,048 tokens are 2 GiB
    (LLAMA_8B, 4096, 24 * GIB, 2),
    (LLAMA_8B, 2048, 4 * GIB, 1),          # a small machine: the single path
    (GEMMA_270M, 2048, None, 8),           # this machine's RAM (any machine that runs the suite has 5 GiB)
    ({"general.architecture": "x"}, 2048, 24 * GIB, 1),    # nothing to size by
])
def test_auto_slots_fit_the_kv_cache_in_the_budget(metadata, n_ctx, memory, slots):
    assert auto_slots(metadata, n_ctx, memory) == slots


class BoundedTeacher(FakeTeacher):
    def __init__(self, bound):
        super().__init__()
        self.max_concurrency = bound


def project_with(tmp_path, max_in_flight):
    project = Project.create(tmp_path / f"p{max_in_flight}", "classification", demo=True)
    project.config.teacher.max_in_flight = max_in_flight
    return project


@pytest.mark.parametrize("setting, bound, expected", [(0, 8, 8), (0, None, 1), (2, 8, 2), (4, 3, 3)])
def test_generation_takes_as_many_as_the_teacher_can_when_auto(tmp_path, setting, bound, expected):
    assert ProjectConfig().teacher.max_in_flight == 0
    teacher = BoundedTeacher(bound) if bound else FakeTeacher()
    assert Generator(project_with(tmp_path, setting), teacher).concurrency == expected


def test_the_bundled_teacher_is_batched_for_generation_only(tmp_path):
    from stillroom.core.backends import load_teacher
    project = Project.create(tmp_path / "demo", "classification", demo=True)
    assert project.config.teacher.max_in_flight == 0
    for batched, parallel in ((True, auto_slots(GEMMA_270M, project.config.teacher.n_ctx)), (False, 1)):
        teacher = load_teacher(project, batched=batched)
        try:
            assert teacher.parallel == parallel and teacher.max_concurrency == parallel
        finally:
            teacher.close()
    project.config.teacher.max_in_flight = 3                   # a number is taken as it is, everywhere
    teacher = load_teacher(project)
    try:
        assert teacher.parallel == 3
    finally:
        teacher.close()
