"""A tiny random Llama with the bundled SmolLM2 tokenizer and chat template, built once per machine.

The weights are random but seeded, so every build is the same model; the tokenizer is the real
SmolLM2 one (read from the bundled GGUF), so chat templates, stop tokens and the GGUF converter's
tokenizer detection behave as they do for the real student.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from clitools import SHARED_CACHE

TINY_VERSION = "tiny-llama-v2"


def tiny_tokenizer():
    from transformers import AutoTokenizer
    folder = SHARED_CACHE / "smollm2-tokenizer"
    if not (folder / "tokenizer.json").exists():
        from stillroom.core.models import bundled_path
        gguf = bundled_path("smollm2-135m-instruct")
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tok.save_pretrained(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return AutoTokenizer.from_pretrained(str(folder))


def tiny_llama_dir() -> Path:
    """A folder holding config.json, model.safetensors and the tokenizer of a ~3M-parameter Llama."""
    folder = SHARED_CACHE / TINY_VERSION
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Larger logits than the default init, so greedy answers vary with the prompt.
        for p in model.parameters():
            p.mul_(4.0) if p.dim() > 1 else None
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def tiny_adapter_dir(base: Path, target: Path) -> Path:
    """A random (non-zero) LoRA adapter for the tiny Llama, saved the way training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(target)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(target)
    return target
