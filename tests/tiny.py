"""Tiny random Llamas for tests that load, train, generate and export without the bundled models.

`build_tiny_llama` builds one in a few hundred milliseconds with a toy BPE tokenizer and a chat
template. `tiny_llama_dir` is the same model with the real SmolLM2 tokenizer (read from the bundled
GGUF), built once per machine, for tests where chat templates, stop tokens and the GGUF converter's
tokenizer detection must behave as they do for the real student. Weights are random but seeded, so
every build is the same model.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from clitools import SHARED_CACHE

TINY_VERSION = "tiny-llama-v2"

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

CORPUS = [
    "billing shipping technical account refund charge invoice parcel late lost password login",
    "The quick brown fox jumps over the lazy dog. My card was charged twice for one order.",
    "Where is my parcel? The app crashes when I open it. I forgot my password, help me log in.",
    "system user assistant route the ticket to one team answer with exactly one label",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()[]{}-_/\\",
]


def build_tokenizer(chat_template: str | None = CHAT_TEMPLATE, vocab_size: int = 320):
    """A byte-level BPE tokenizer trained on a few lines, with ChatML-style special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def build_tiny_llama(folder: Path, *, chat_template: str | None = CHAT_TEMPLATE, seed: int = 0,
                     layers: int = 2, hidden: int = 64, tokenizer=None, weight_scale: float = 1.0) -> Path:
    """Save a 2-layer, hidden-64 Llama and its tokenizer (the toy one unless given) as a safetensors
    folder; returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(chat_template)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if weight_scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.mul_(weight_scale)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_tokenizer():
    """The bundled SmolLM2 tokenizer, saved once per machine in the shared cache."""
    from transformers import AutoTokenizer
    folder = SHARED_CACHE / "smollm2-tokenizer"
    if not (folder / "tokenizer.json").exists():
        from stillroom.core.models import bundled_path
        gguf = bundled_path("smollm2-135m-instruct")
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        _publish(folder, tok.save_pretrained)
    return AutoTokenizer.from_pretrained(str(folder))


def tiny_llama_dir() -> Path:
    """A ~3M-parameter Llama with the SmolLM2 tokenizer, built once per machine in the shared cache."""
    folder = SHARED_CACHE / TINY_VERSION
    if not (folder / "model.safetensors").exists():
        # Larger weights than the default init, so greedy answers vary with the prompt.
        _publish(folder, lambda tmp: build_tiny_llama(tmp, tokenizer=tiny_tokenizer(), weight_scale=4.0))
    return folder


def tiny_adapter_dir(base: Path, target: Path) -> Path:
    """A random (non-zero) LoRA adapter for a tiny Llama, saved the way training saves one."""
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


def demo_with_adapter(root: Path, run_id: str, **evaluation):
    """The demo project with the SmolLM2-tokenizer tiny Llama as its student and a random LoRA adapter as
    run `run_id`; `evaluation` overrides evaluation settings (e.g. max_tokens=6)."""
    import json
    from stillroom.core.project import Project
    project = Project.create(root, demo=True)
    config = project.config
    config.student.model = str(tiny_llama_dir())
    for key, value in evaluation.items():
        setattr(config.evaluation, key, value)
    project.save_config(config)
    run_dir = project.runs_dir / run_id
    tiny_adapter_dir(tiny_llama_dir(), run_dir / "adapter")
    (run_dir / "config.json").write_text(json.dumps({"student": {"model": config.student.model}}))
    return project


def _publish(folder: Path, write) -> None:
    """Write into a private folder, then move it into place, so parallel builds never see half a model."""
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
