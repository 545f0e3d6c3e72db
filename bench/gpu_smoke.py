"""The whole loop on a CUDA machine, small: the bundled teacher writes rows on the GPU, the bundled
student trains on them in bf16 on the GPU, and the tuned student is evaluated against teacher and base.

    CMAKE_ARGS="-DGGML_CUDA=on" pip install llama-cpp-python --no-binary llama-cpp-python --force-reinstall
    python bench/gpu_smoke.py [--count 20] [--steps 40] [--keep DIR]

Prints the teacher's generation tokens/s, the student's training tokens/s and the gap closed. Fails
loudly (exit 1, one FAIL line) when anything ran on the CPU instead: a llama-cpp-python built without
GPU offload, a teacher whose weights did not reach the GPU, a student whose parameters are not on
CUDA or whose frozen weights are not bf16. Without CUDA it prints "skipped: no CUDA" and exits 0.

Ends with: RATIOS gpu_smoke: generation_tok_s=... training_tok_s=... gap_closed=...
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import _common  # noqa: F401
from _common import Timer, ratios


class Failed(Exception):
    """Something ran on the CPU, or did not run at all."""


def cuda_device() -> str | None:
    """The CUDA card's name, or None where torch sees no CUDA."""
    import torch
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def check_llama_offload() -> None:
    import llama_cpp
    if not llama_cpp.llama_supports_gpu_offload():
        raise Failed("llama-cpp-python was built without GPU offload, so the teacher would run on the CPU; "
                     "reinstall it: CMAKE_ARGS=\"-DGGML_CUDA=on\" pip install llama-cpp-python "
                     "--no-binary llama-cpp-python --force-reinstall")


def gpu_used_mb() -> float:
    """Memory in use on the card, by every user of it (llama.cpp's allocations are not torch's)."""
    import torch
    free, total = torch.cuda.mem_get_info(0)
    return (total - free) / 2 ** 20


def make_project(root: Path, steps: int):
    from stillroom.core.project import Project
    project = Project.create(root, demo=True)
    cfg = project.config
    cfg.teacher.n_gpu_layers = -1
    cfg.teacher.max_in_flight = 4
    cfg.training.method = "lora"                 # the frozen base is what must be bf16
    cfg.training.device = cfg.evaluation.device = "cuda"
    cfg.training.precision = "bf16"
    cfg.training.max_steps = steps
    cfg.training.save_steps = steps
    cfg.evaluation.baselines = []
    project.save_config()
    return Project.open(project.root)


def generate_on_gpu(project, count: int) -> float:
    """Teacher tokens/s; fails unless the teacher's weights took GPU memory while it wrote."""
    from stillroom.core.backends import load_teacher
    from stillroom.core.generate import generate
    from stillroom.core.models import resolve
    before = gpu_used_mb()
    teacher = load_teacher(project)
    try:
        result = generate(project, count, teacher=teacher)
        held = gpu_used_mb() - before
    finally:
        teacher.close()
    if result.kept < count:
        raise Failed(f"generation kept {result.kept}/{count} rows")
    gguf_mb = resolve(project.config.teacher.model, project_dir=project.root).path.stat().st_size / 2 ** 20
    if held < 0.5 * gguf_mb:
        raise Failed(f"the teacher's weights did not reach the GPU: GPU memory rose by {held:.0f} MB while "
                     f"it wrote, for a {gguf_mb:.0f} MB GGUF (n_gpu_layers = -1)")
    print(f"generation: {result.kept} rows in {result.elapsed:.1f} s ({result.kept / result.elapsed:.2f} rows/s), "
          f"teacher {result.teacher_tokens / result.teacher_seconds:.1f} tok/s, {held:.0f} MB on the GPU "
          f"({gguf_mb:.0f} MB GGUF)", flush=True)
    return result.teacher_tokens / result.teacher_seconds


def parameter_check():
    """A TrainerCallback that records where the student's parameters live and in which dtype, at the
    first step (by then Trainer has moved the model)."""
    from transformers import TrainerCallback

    class ParameterCheck(TrainerCallback):
        devices: set = set()
        frozen_dtypes: set = set()

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if model is not None and not self.devices:
                params = list(model.parameters())
                self.devices = {p.device.type for p in params}
                self.frozen_dtypes = {str(p.dtype).replace("torch.", "") for p in params if not p.requires_grad}
    return ParameterCheck()


def train_on_gpu(project) -> tuple[float, str]:
    """Training tokens/s and the run id; fails unless every parameter was on CUDA and the frozen base bf16."""
    import stillroom.core.train as core_train
    from stillroom.core import events
    check = parameter_check()
    make_trainer = core_train._make_trainer

    def with_check(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.add_callback(check)
        return trainer
    started = []
    core_train._make_trainer = with_check
    try:
        result = core_train.train(project, on_event=lambda e: started.append(e)
                                  if isinstance(e, events.TrainStarted) else None)
    finally:
        core_train._make_trainer = make_trainer
    start = started[0]
    if (start.device, start.precision) != ("cuda", "bf16"):
        raise Failed(f"the student trained on {start.device} in {start.precision}, not cuda in bf16")
    if check.devices != {"cuda"}:
        raise Failed(f"the student's parameters were on {', '.join(sorted(check.devices)) or 'nothing seen'} "
                     f"during training, not only cuda")
    if check.frozen_dtypes != {"bfloat16"}:
        raise Failed(f"the student's frozen weights were {', '.join(sorted(check.frozen_dtypes))}, not bfloat16")
    print(f"training: {result.step} steps, {result.tokens_per_second:.0f} tok/s, loss "
          f"{result.first_loss:.3f} → {result.final_loss:.3f}, peak {result.peak_memory_mb:.0f} MB "
          f"(cuda, bf16)", flush=True)
    return result.tokens_per_second, result.run_id


def evaluate_on_gpu(project, run_id: str) -> float | None:
    from stillroom.core.evaluate import evaluate, gap_line
    result = evaluate(project, run_id)
    gap = result.metrics["gap_closed"]
    headline = result.metrics["headline"]
    scores = ", ".join(f"{key} {agg[headline]:.3f}" for key, agg in result.metrics["models"].items())
    print(f"evaluation: {gap_line(gap)}; {headline}: {scores}", flush=True)
    return gap.get("value")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="kept rows the teacher writes")
    parser.add_argument("--steps", type=int, default=40, help="training steps")
    parser.add_argument("--keep", type=Path, help="project folder to keep (default: a temporary one)")
    args = parser.parse_args()
    card = cuda_device()
    if card is None:
        print("skipped: no CUDA")
        return 0
    print(f"{card}", flush=True)
    try:
        check_llama_offload()
        with tempfile.TemporaryDirectory() as tmp:
            project = make_project(args.keep or Path(tmp) / "smoke", args.steps)
            with Timer() as total:
                gen_tps = generate_on_gpu(project, args.count)
                train_tps, run_id = train_on_gpu(project)
                gap = evaluate_on_gpu(project, run_id)
    except Failed as exc:
        print(f"FAIL: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"whole loop: {total.seconds:.0f} s on {card}")
    ratios("gpu_smoke", generation_tok_s=gen_tps, training_tok_s=train_tps,
           gap_closed=float("nan") if gap is None else gap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
