"""Base + adapter merged into plain safetensors, with the tokenizer, its chat template and a greedy
generation config whose end tokens are the chat template's own."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..events import EventSink, ExportProgress, ignore
from ..project import Project
from .files import ExportError, partial_path, publish_dir, write_stamp


def export_merged(project: Project, weights, out_dir: Path, *, dtype: str = "auto",
                  on_event: EventSink = ignore) -> Path:
    """Base + adapter merged into plain weights, saved with the tokenizer and its chat template."""
    import torch
    from ..student import load_student, load_tokenizer, quiet_transformers
    quiet_transformers()
    final = out_dir / "merged"
    tmp = partial_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    on_event(ExportProgress("loading the student", 0, 3))
    if weights.adapter is not None:
        model, tokenizer = load_student(weights.student_ref, project_dir=project.root, adapter=weights.adapter,
                                        device="cpu", dtype="fp32")
        on_event(ExportProgress("merging the adapter", 1, 3))
        model = model.merge_and_unload()
        if (weights.adapter / "tokenizer_config.json").exists():
            tokenizer = load_tokenizer(weights.adapter, chat_template=project.config.student.chat_template)
    else:
        model, tokenizer = load_student(str(weights.model_dir), project_dir=project.root, device="cpu",
                                        dtype="fp32")
    target = _save_dtype(model, dtype)
    model.to(target)
    if getattr(model.config, "dtype", None) is not None or hasattr(model.config, "torch_dtype"):
        model.config.dtype = target
    if not getattr(tokenizer, "chat_template", None):
        raise ExportError(f"{weights.student_ref}: the student has no chat template to export",
                          "set student.chat_template in stillroom.toml")
    stop_ids = _stop_token_ids(tokenizer)
    generation = model.generation_config
    generation.eos_token_id = stop_ids[0] if len(stop_ids) == 1 else stop_ids
    generation.pad_token_id = tokenizer.pad_token_id
    generation.do_sample = False
    for name in ("temperature", "top_p", "top_k"):
        setattr(generation, name, None)
    on_event(ExportProgress("writing safetensors", 2, 3))
    try:
        with torch.no_grad():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(tmp)
        write_stamp(tmp, weights, "merged")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"{final}: could not write the merged model: {exc.strerror or exc}") from None
    publish_dir(tmp, final)
    on_event(ExportProgress("merged", 3, 3))
    return final


def _save_dtype(model, requested: str):
    import torch
    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if requested != "auto":
        return names[requested]
    # auto: the precision the student was published in (16-bit stays 16-bit), else fp32
    original = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    if isinstance(original, str):
        original = getattr(torch, original, None)
    return original if original in (torch.bfloat16, torch.float16) else torch.float32


def _stop_token_ids(tokenizer) -> list[int]:
    from ..backends.hf import END_OF_TURN
    vocab = tokenizer.get_vocab()
    ids = []
    template = getattr(tokenizer, "chat_template", "") or ""
    for marker in END_OF_TURN:
        if marker in vocab and marker in template:
            ids.append(int(vocab[marker]))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids
