"""Training throughput and memory: Stillroom's trainer against TRL's SFTTrainer on the same rows.

Same student (the bundled SmolLM2-135M-Instruct, de-quantized once to safetensors), same rows (the
demo's short support tickets with their labels, chat format, varied length), LoRA r=16/alpha=32 on the
attention and MLP projections, same batch size, steps, learning rate and seed, on the CPU. TRL runs
twice: as shipped (SFTConfig defaults: bf16 autocast where the CPU allows it, activation
checkpointing, no packing) and tuned for the machine (fp32, no activation checkpointing, packing).
Each trainer runs in its own process, so peak RSS is its own. Useful tokens are the non-padding tokens
the model's forward pass sees, counted by the same hook for all three.

    pip install -e ".[bench]"        # TRL and datasets
    python bench/train.py [--steps 8]

Ends with: RATIOS train: vs_trl_tuned=<useful tok/s ratio> rss_vs_trl_tuned=<peak RSS ratio> ...
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401
from _common import machine, peak_rss_mb, ratios

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
BATCH, LR, SEED, MAX_LEN = 8, 2e-4, 0, 256


def rows() -> list[dict]:
    from importlib import resources
    demo = resources.files("stillroom.core.demo")
    out = []
    for name in ("seeds.jsonl", "test.jsonl"):
        out += [json.loads(line) for line in demo.joinpath(name).read_text("utf-8").splitlines() if line.strip()]
    return out * 3     # 264 short chat rows


class Counter:
    """Counts the non-padding tokens of every forward pass of the top model, and the training time."""

    def __init__(self):
        self.tokens = 0
        self.start = self.end = None

    def install(self):
        import transformers
        counter = self
        original = transformers.Trainer.__init__

        class Callback(transformers.TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                def hook(module, a, kwargs):
                    if not module.training:
                        return
                    mask = kwargs.get("attention_mask")
                    ids = kwargs.get("input_ids", a[0] if a else None)
                    counter.tokens += int(mask.sum()) if mask is not None and mask.dim() == 2 else int(ids.numel())
                model.register_forward_pre_hook(hook, with_kwargs=True)
                counter.start = time.perf_counter()

            def on_train_end(self, *a, **kw):
                counter.end = time.perf_counter()

        def init(self, *a, **kw):
            original(self, *a, **kw)
            self.add_callback(Callback())
        transformers.Trainer.__init__ = init


def run_stillroom(steps: int, folder: Path) -> None:
    from stillroom.core.project import Project
    from stillroom.core.train import train
    project = Project.create(folder / "proj", "classification", demo=True)
    project.config.evaluation.test_fraction = 0.0
    project.save_config()
    project.save_seeds(rows())
    project.save_tests([])
    train(Project.open(project.root), overrides=dict(
        max_steps=steps, method="lora", batch_size=BATCH, lora_rank=LORA["r"], lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"], learning_rate=LR, seed=SEED, max_length=MAX_LEN,
        validation_fraction=0.0, save_steps=10 ** 6, eval_steps=10 ** 6, logging_steps=1, device="cpu"))


def run_trl(steps: int, folder: Path, tuned: bool) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from stillroom.core.student import student_folder
    path = student_folder("bundled:smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    settings = dict(output_dir=str(folder / "trl"), max_steps=steps, per_device_train_batch_size=BATCH,
                    learning_rate=LR, seed=SEED, max_length=MAX_LEN, logging_steps=1, save_strategy="no",
                    report_to="none", use_cpu=True)
    if tuned:
        settings.update(bf16=False, fp16=False, gradient_checkpointing=False, packing=True)
    trainer = SFTTrainer(model=model, args=SFTConfig(**settings),
                         train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows()]),
                         processing_class=tokenizer, peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    args = trainer.args
    print(f"  trl settings: bf16={args.bf16} gradient_checkpointing={args.gradient_checkpointing} "
          f"packing={args.packing}", flush=True)
    trainer.train()


def child(which: str, steps: int, out: Path) -> None:
    counter = Counter()
    counter.install()
    folder = Path(tempfile.mkdtemp(prefix="stillroom-bench-train-"))
    if which == "stillroom":
        run_stillroom(steps, folder)
    else:
        run_trl(steps, folder, tuned=which == "trl-tuned")
    seconds = counter.end - counter.start
    out.write_text(json.dumps({"tokens": counter.tokens, "seconds": seconds, "tps": counter.tokens / seconds,
                               "peak_rss_mb": peak_rss_mb()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--child", choices=["stillroom", "trl-shipped", "trl-tuned"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.out)
        return
    print(f"machine: {machine()}; {args.steps} steps of {BATCH} rows, LoRA r={LORA['r']}", flush=True)
    results = {}
    for which in ("stillroom", "trl-tuned", "trl-shipped"):
        out = Path(tempfile.mkstemp(suffix=".json")[1])
        done = subprocess.run([sys.executable, __file__, "--child", which, "--steps", str(args.steps),
                               "--out", str(out)])
        if done.returncode != 0:
            sys.exit(f"{which} failed with exit code {done.returncode}")
        results[which] = r = json.loads(out.read_text())
        print(f"{which:12s}: {r['tokens']} useful tokens in {r['seconds']:.1f} s = {r['tps']:.1f} tok/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    s, tuned, shipped = results["stillroom"], results["trl-tuned"], results["trl-shipped"]
    ratios("train", vs_trl_tuned=s["tps"] / tuned["tps"], rss_vs_trl_tuned=s["peak_rss_mb"] / tuned["peak_rss_mb"],
           vs_trl_shipped=s["tps"] / shipped["tps"],
           rss_vs_trl_shipped=s["peak_rss_mb"] / shipped["peak_rss_mb"], stillroom_tps=s["tps"],
           trl_tuned_tps=tuned["tps"], trl_shipped_tps=shipped["tps"])


if __name__ == "__main__":
    main()
