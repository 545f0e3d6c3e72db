"""Export a run: the LoRA adapter, merged safetensors, GGUFs for llama.cpp, and an Ollama Modelfile.

Everything lands in exports/<run-id>/:
    adapter/                 the PEFT adapter (+ tokenizer), as training saved it            (adapter.py)
    merged/                  base + adapter merged: safetensors, tokenizer, chat template,
                             generation config                                               (merged.py)
    <run-id>-<quant>.gguf    one per asked type (q4_k_m, q5_k_m, q6_k, q8_0, f16): llama.cpp's
                             converter writes f16, llama.cpp's quantizer the others          (gguf.py)
    Modelfile                FROM the first asked GGUF, with the chat template in Ollama's
                             syntax and the stop tokens                                      (ollama.py)
    gguf-check.json          the first GGUF's score on the test set next to the merged model's
    quants.md, quants.json   every GGUF's size, llama.cpp tokens/s, score and agreement      (check.py)

Every file and folder is written under a temporary name and renamed when complete, so a half-written
export never carries its final name (files.py).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from ..events import EventSink, ExportFinished, Status, ignore
from ..project import Project
from .adapter import export_adapter
from .check import check_gguf, check_ggufs, table_cells, table_columns, table_notes, write_check
from .files import STAMP, ExportError, check_cancel, remove_leftovers, stamp_matches
from .gguf import DEFAULT_QUANT, QUANTS, build_ggufs, convert_to_gguf, parse_quants, quantize_gguf
from .merged import export_merged
from .ollama import (chat_wrappers, go_template, modelfile_text, parse_modelfile, render_with_wrappers,
                     stop_strings, write_modelfile)

__all__ = ["FORMATS", "QUANTS", "DEFAULT_QUANT", "DTYPES", "STAMP", "ExportError", "ExportResult", "export",
           "export_adapter", "export_merged", "convert_to_gguf", "quantize_gguf", "build_ggufs", "parse_quants",
           "check_gguf", "check_ggufs", "table_columns", "table_cells", "table_notes", "chat_wrappers",
           "render_with_wrappers", "go_template", "stop_strings", "modelfile_text", "parse_modelfile",
           "write_modelfile"]

FORMATS = ("adapter", "merged", "gguf", "ollama")
DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass
class ExportResult:
    format: str
    paths: list = field(default_factory=list)
    check: Optional[dict] = None          # the first GGUF's check (gguf-check.json)
    quants: Optional[dict] = None         # the quant table (quants.json, without the answers)


# ---------------------------------------------------------------- the command

def export(project: Project, run: Optional[str] = None, fmt: str = "gguf", *,
           quant: Union[str, Sequence[str], None] = None, dtype: str = "auto", check: bool = True,
           check_limit: Optional[int] = None, out_dir: Optional[Path] = None, on_event: EventSink = ignore,
           cancel: Optional[threading.Event] = None) -> ExportResult:
    """Export a run (default: the latest) in one format; gguf and ollama build the merged model first
    (reused when it is already exported from the same weights), then a GGUF per type in `quant`
    ("q4_k_m,q8_0" or a list; default q4_k_m), each checked on the test set unless `check` is off.
    The Ollama Modelfile uses the first type."""
    from ..evaluate import run_weights
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    quants = parse_quants(quant)
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

    ggufs = build_ggufs(merged, out_dir, weights.run_id, quants, rebuild=fmt == "gguf",
                        n_threads=project.config.teacher.n_threads, cancel=cancel, on_event=on_event)
    result.paths.extend(ggufs.values())
    if fmt == "ollama":
        from ..student import load_tokenizer
        tokenizer = load_tokenizer(merged)
        result.paths.append(write_modelfile(out_dir, ggufs[quants[0]].name, tokenizer,
                                            project.config.task.system_prompt))
    if check:
        check_cancel(cancel)
        report = check_ggufs(project, ggufs, merged, limit=check_limit, on_event=on_event, cancel=cancel)
        result.check, result.quants = write_check(out_dir, weights.run_id, report, ggufs, merged, quants[0])
    on_event(ExportFinished(fmt, tuple(map(str, result.paths)), result.check))
    return result
