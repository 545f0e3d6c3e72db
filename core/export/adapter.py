"""The LoRA adapter (PEFT format) as training saved it, copied without pickled files."""
from __future__ import annotations

import shutil
from pathlib import Path

from .files import ExportError, partial_path, publish_dir, write_stamp


def export_adapter(weights, out_dir: Path) -> Path:
    if weights.adapter is None:
        raise ExportError(f"{weights.run_dir}: run {weights.run_id} is a full fine-tune; it has no LoRA adapter",
                          "export it with --format merged (or gguf)")
    final = out_dir / "adapter"
    tmp = partial_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(weights.adapter, tmp, ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.pth",
                                                                         "optimizer*", "rng_state*"))
    write_stamp(tmp, weights, "adapter")
    publish_dir(tmp, final)
    return final
