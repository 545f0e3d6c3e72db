"""Device and precision choice: the CPU bf16 rule decided from feature flags (faked here), CUDA and the
explicit settings."""
import pytest

from stillroom.core import device
from stillroom.core.device import auto_precision, cpu_flags, cpu_has_fast_bf16, pick_device, pick_precision
from stillroom.core.errors import ModelError

# /proc/cpuinfo flags (abridged) of the CPU kinds the rule tells apart.
SAPPHIRE_RAPIDS = set("fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 "
                      "amx_bf16 avx512_fp16 amx_tile amx_int8".split())
AMX_ONLY = {"avx2", "avx512f", "amx_tile", "amx_bf16"}           # AMX without the avx512_bf16 flag
COOPER_LAKE = set("sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16".split())
EPYC_AVX2 = set("fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi1 bmi2 sha_ni".split())
SKYLAKE_AVX512 = set("sse4_2 avx avx2 fma avx512f avx512bw avx512cd avx512dq avx512vl".split())


@pytest.mark.parametrize("flags, fast", [
    (SAPPHIRE_RAPIDS, True), (AMX_ONLY, True), (COOPER_LAKE, True),
    (EPYC_AVX2, False), (SKYLAKE_AVX512, False), ({"amx_int8", "amx_tile"}, False), (set(), False),
])
def test_fast_cpu_bf16_is_read_from_the_feature_flags(flags, fast):
    assert cpu_has_fast_bf16(flags) is fast


def test_auto_precision_on_a_cpu_follows_the_flags_for_training_only():
    assert auto_precision("cpu", cuda_bf16=False, flags=SAPPHIRE_RAPIDS, training=True) == "bf16"
    assert auto_precision("cpu", cuda_bf16=False, flags=COOPER_LAKE, training=True) == "bf16"
    assert auto_precision("cpu", cuda_bf16=False, flags=EPYC_AVX2, training=True) == "fp32"
    # Weights loaded for inference (evaluation, chat) stay fp32 on any CPU.
    assert auto_precision("cpu", cuda_bf16=False, flags=SAPPHIRE_RAPIDS, training=False) == "fp32"
    assert auto_precision("mps", cuda_bf16=False, flags=SAPPHIRE_RAPIDS, training=True) == "fp32"


def test_auto_precision_on_cuda_is_unchanged():
    for training in (True, False):
        assert auto_precision("cuda", cuda_bf16=True, flags=EPYC_AVX2, training=training) == "bf16"
        assert auto_precision("cuda:1", cuda_bf16=True, flags=(), training=training) == "bf16"
        assert auto_precision("cuda", cuda_bf16=False, flags=SAPPHIRE_RAPIDS, training=training) == "fp32"


def test_pick_precision_reads_this_cpus_flags(monkeypatch):
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    assert pick_precision("cpu", "auto", training=True) == "bf16"
    assert pick_precision("cpu", "auto") == "fp32"
    assert pick_precision("cpu", "fp32", training=True) == "fp32"        # an explicit choice wins
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(EPYC_AVX2))
    assert pick_precision("cpu", "auto", training=True) == "fp32"
    assert pick_precision("cpu", "bf16", training=True) == "bf16"


def test_cpu_flags_of_this_machine_are_a_set_of_names():
    flags = cpu_flags()
    assert isinstance(flags, frozenset) and all(isinstance(f, str) and " " not in f for f in flags)
    expected = "bf16" if cpu_has_fast_bf16(flags) else "fp32"
    assert pick_precision("cpu", "auto", training=True) == expected


def test_device_and_explicit_precision_choice():
    import torch
    assert pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto") in ("cpu", "mps")
        with pytest.raises(ModelError, match="no CUDA"):
            pick_device("cuda")
    assert pick_precision("cpu") == "fp32"
    assert pick_precision("cpu", "bf16") == "bf16"
    with pytest.raises(ModelError, match="fp16"):
        pick_precision("cpu", "fp16")
    with pytest.raises(ModelError, match="precision"):
        pick_precision("cpu", "int3")
