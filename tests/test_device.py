"""Device and precision choice."""
import pytest

from stillroom.core.device import pick_device, pick_precision
from stillroom.core.errors import ModelError


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
