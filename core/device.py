"""Where the student runs and in which precision; the processes of a distributed run.

Device: CUDA, then Apple MPS, then the CPU, unless one is asked for. Precision for training: bf16 on a
CUDA GPU that supports it; on a CPU, bf16 where the CPU computes it natively (Intel AMX or AVX512-BF16),
fp32 elsewhere. The CPU rule comes from the CPU's feature flags, never from a timing at run time:
`cpu_has_fast_bf16` takes the flags, so the rule is tested with any CPU's flags on any machine.

torch and accelerate are imported inside the functions that need them.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ModelError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


# ---------------------------------------------------------------- device

def pick_device(requested: str = "auto") -> str:
    """auto: CUDA, then Apple MPS, then CPU. An explicit device that is not there is an error."""
    requested = (requested or "auto").lower()
    import torch
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested.startswith("cuda"):
        if not cuda:
            raise ModelError(f"device {requested!r} asked for, but torch sees no CUDA GPU",
                             "set training.device = \"auto\" or \"cpu\"")
        return requested
    if requested == "mps":
        if not mps:
            raise ModelError("device 'mps' asked for, but torch sees no Apple GPU",
                             "set training.device = \"auto\" or \"cpu\"")
        return "mps"
    if requested == "cpu":
        return "cpu"
    raise ModelError(f"unknown device {requested!r}; expected auto, cuda, mps or cpu")


# ---------------------------------------------------------------- precision

def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo; empty where they cannot be read
    (macOS, Windows), which the precision rule reads as "no fast bf16"."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text("utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_has_fast_bf16(flags: Iterable[str]) -> bool:
    """Whether a CPU with these feature flags computes bf16 matrix products natively: Intel AMX (tiles
    with bf16) or AVX512-BF16. There bf16 mixed precision trains faster than fp32 (an Intel AMX,
    Sapphire Rapids class machine: 505-517 vs 466 tokens/s); elsewhere bf16 is emulated and about 3x
    slower (an AMD EPYC with AVX2)."""
    flags = set(flags)
    return {"amx_tile", "amx_bf16"} <= flags or "avx512_bf16" in flags


def auto_precision(device: str, *, cuda_bf16: bool, flags: Iterable[str], training: bool) -> str:
    """The automatic precision, from what the hardware offers. CPU bf16 is chosen for training only,
    where Trainer runs bf16 autocast over fp32 master weights; loading weights for inference stays fp32
    on a CPU."""
    if device.startswith("cuda"):
        return "bf16" if cuda_bf16 else "fp32"
    if device == "cpu" and training and cpu_has_fast_bf16(flags):
        return "bf16"
    return "fp32"


def bf16_supported(device: str) -> bool:
    if device.startswith("cuda"):
        import torch
        try:
            return bool(torch.cuda.is_bf16_supported())
        except Exception:
            return False
    return False


def pick_precision(device: str, requested: str = "auto", *, training: bool = False) -> str:
    """auto: bf16 on a CUDA GPU that supports it; for training on a CPU with fast bf16, bf16; else fp32.
    An explicit precision the device cannot run is an error."""
    requested = (requested or "auto").lower()
    if requested not in PRECISIONS:
        raise ModelError(f"unknown precision {requested!r}; expected one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        return auto_precision(device, cuda_bf16=bf16_supported(device),
                              flags=cpu_flags() if device == "cpu" and training else (),
                              training=training)
    if requested == "fp16" and device == "cpu":
        raise ModelError("fp16 training needs a GPU; on the CPU use fp32 (or bf16)",
                         "set training.precision = \"auto\"")
    if requested == "bf16" and device.startswith("cuda") and not bf16_supported(device):
        raise ModelError("this GPU does not support bf16", "set training.precision = \"fp16\" or \"auto\"")
    return requested


def torch_dtype(precision: str):
    import torch
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def peak_memory_mb(device: str) -> float:
    import torch
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2 ** 20 if sys.platform == "darwin" else rss / 1024
    except ImportError:  # pragma: no cover - Windows
        return 0.0


# ---------------------------------------------------------------- several processes (DDP)

def world() -> tuple[int, int]:
    """(rank, world size) from the environment accelerate/torchrun set, before torch is initialised."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def agree(value: Any, world_size: int, use_cpu: bool) -> Any:
    """Rank 0's value on every rank (the run id, the folder to resume)."""
    if world_size <= 1:
        return value
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list
    PartialState(cpu=use_cpu)
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def barrier(world_size: int) -> None:
    if world_size > 1:
        from accelerate import PartialState
        PartialState().wait_for_everyone()
