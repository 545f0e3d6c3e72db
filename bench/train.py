"""Training throughput and memory: Stillroom's trainer against TRL's SFTTrainer on the same rows.

Same student (the bundled SmolLM2-135M-Instruct, de-quantized once to safetensors), same rows (the
demo's short support tickets with their labels, chat format, varied length), LoRA r=16/alpha=32 on the
attention and MLP projections, same steps, learning rate and seed, on the CPU, and the same rows per
step (8), so the same useful tokens per step:

- Stillroom: 8 rows per step, packed into one sequence with no padding around the prefix the rows
  share (here the chat template's header and SmolLM2's default system prompt run once per step, not
  once per row; core/packing.py), logits only where an answer token is predicted.
- TRL tuned for the machine: fp32, no activation checkpointing, packing (best-fit, padding-free) into
  one sequence per step of 8 x the mean row length, so a step holds about 8 rows too.
- TRL as shipped: SFTConfig defaults (bf16 autocast where the CPU allows it, activation checkpointing,
  no packing), 8 padded rows per step.

Each trainer runs in its own process, so peak RSS is its own. Useful tokens are the tokens of the
training rows each forward pass covers (no padding), counted by the same hook for all three over the
training loop only (model loading and data preparation are left out): the attention mask's sum for
padded rows, and for packed rows the rows' lengths read off the position ids, so a prompt prefix that
Stillroom runs once for a whole batch still counts once per row, as the rows hold it. The tokens the
model actually ran are printed next to them. On a shared machine the wall clock includes waiting
for a core, so Stillroom and TRL tuned run alternately --rounds times, each keeps its fastest round,
and the CPU time of the loop is reported too.

    pip install -e ".[bench]"        # TRL and datasets
    python bench/train.py [--steps 8] [--rounds 2]

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
from stillroom.core.packing import row_tokens

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
        self.tokens = 0          # tokens of the rows trained on
        self.computed = 0        # tokens the model actually ran (fewer where a prefix is shared)
        self.steps = 0
        self.start = self.end = None
        self.cpu_start = self.cpu_end = None

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
                    positions = kwargs.get("position_ids")
                    counter.computed += int(ids.numel())
                    if mask is not None and mask.dim() == 2:          # padded rows
                        counter.tokens += int(mask.sum())
                    elif positions is not None:                       # packed rows, shared prefix or not
                        counter.tokens += row_tokens(positions)
                    else:
                        counter.tokens += int(ids.numel())
                model.register_forward_pre_hook(hook, with_kwargs=True)
                counter.start, counter.cpu_start = time.perf_counter(), time.process_time()

            def on_step_end(self, args, state, control, **kw):
                counter.steps = state.global_step

            def on_train_end(self, *a, **kw):
                counter.end, counter.cpu_end = time.perf_counter(), time.process_time()

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


def mean_row_tokens() -> float:
    from transformers import AutoTokenizer
    from stillroom.core.student import student_folder
    tokenizer = AutoTokenizer.from_pretrained(student_folder("bundled:smollm2-135m-instruct"))
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
               for r in rows()]
    return sum(lengths) / len(lengths)


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
        # One packed sequence per step holding about as many rows as Stillroom's step of BATCH rows.
        settings.update(bf16=False, fp16=False, gradient_checkpointing=False, packing=True,
                        per_device_train_batch_size=1, max_length=round(BATCH * mean_row_tokens()))
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
    seconds, cpu = counter.end - counter.start, counter.cpu_end - counter.cpu_start
    out.write_text(json.dumps({"tokens": counter.tokens, "computed": counter.computed, "steps": counter.steps, "seconds": seconds,
                               "tps": counter.tokens / seconds, "cpu_seconds": cpu,
                               "tokens_per_cpu_s": counter.tokens / cpu, "peak_rss_mb": peak_rss_mb()}))


def measure(which: str, steps: int) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    done = subprocess.run([sys.executable, __file__, "--child", which, "--steps", str(steps), "--out", str(out)])
    if done.returncode != 0:
        sys.exit(f"{which} failed with exit code {done.returncode}")
    r = json.loads(out.read_text())
    print(f"{which:12s}: {r['tokens']} useful tokens in {r['steps']} steps ({r['tokens'] / r['steps']:.0f} per "
          f"step; {r['computed']} run through the model), {r['seconds']:.1f} s = {r['tps']:.1f} tok/s; {r['tokens_per_cpu_s']:.1f} tok per CPU s; "
          f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    return r


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of Stillroom and TRL tuned")
    parser.add_argument("--skip-shipped", action="store_true", help="leave out TRL as shipped (slow on a CPU)")
    parser.add_argument("--child", choices=["stillroom", "trl-shipped", "trl-tuned"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.out)
        return
    print(f"machine: {machine()}; {args.steps} steps of {BATCH} rows, LoRA r={LORA['r']}", flush=True)
    runs = {"stillroom": [], "trl-tuned": []}
    for _ in range(args.rounds):
        for which in runs:
            runs[which].append(measure(which, args.steps))
    s = max(runs["stillroom"], key=lambda r: r["tps"])
    tuned = max(runs["trl-tuned"], key=lambda r: r["tps"])
    values = dict(vs_trl_tuned=s["tps"] / tuned["tps"],
                  cpu_vs_trl_tuned=s["tokens_per_cpu_s"] / tuned["tokens_per_cpu_s"],
                  rss_vs_trl_tuned=s["peak_rss_mb"] / tuned["peak_rss_mb"])
    if not args.skip_shipped:
        shipped = measure("trl-shipped", args.steps)
        values.update(vs_trl_shipped=s["tps"] / shipped["tps"],
                      rss_vs_trl_shipped=s["peak_rss_mb"] / shipped["peak_rss_mb"], trl_shipped_tps=shipped["tps"])
    print(f"machine after: {machine()}", flush=True)
    ratios("train", **values, stillroom_tps=s["tps"], trl_tuned_tps=tuned["tps"])


if __name__ == "__main__":
    main()
