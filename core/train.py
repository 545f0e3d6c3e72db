"""Fine-tuning the student on the kept rows: data rendering, LoRA or full SFT with transformers.Trainer,
run folders, live events, cancel, and resume from the last checkpoint.

    runs/<run-id>/
      config.json      the resolved project config, overrides, data hash and counts, device, precision
      data.jsonl       the exact rows of this run, each tagged train / validation (resume reuses them)
      state.json       status (running, stopped, finished, failed), step, final losses; rewritten atomically
      metrics.jsonl    one line per logging step: step, epoch, loss, eval_loss, learning_rate,
                       tokens_per_second, elapsed, peak_memory_mb, tokens_seen
      checkpoints/     transformers checkpoints (weights, optimizer, scheduler, RNG), the newest few
      adapter/         the final LoRA adapter (PEFT, safetensors) with the tokenizer   (method = lora)
      model/           the final full model (safetensors) with the tokenizer            (method = full)

Several processes: `accelerate launch --num_processes N [--cpu] -m stillroom.tui train PATH` runs the
same run with Trainer's distributed data parallel; rank 0 chooses the run id and alone writes run files.

torch, transformers and peft are imported inside functions.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import records
from .config import ProjectConfig, TrainingConfig, parse_config, render_toml
from .errors import ConfigError, DataError, StillroomError
from .events import (CheckpointSaved, EvalStep, EventSink, Status, TrainFinished, TrainStarted, TrainStep,
                     ignore)
from .fsio import JsonlAppender, atomic_write_jsonl, atomic_write_text, repair_torn_tail
from .lock import process_alive
from .packing import IGNORE_INDEX, pack, packing_isolates_rows, shared_prefix_isolates_rows

CHECKPOINT_PREFIX = "checkpoint-"

# LoRA targets per architecture (transformers model_type); anything else gets peft's "all-linear".
_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_TARGETS = {
    **{t: _LLAMA_LIKE for t in ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
                                 "gemma", "gemma2", "gemma3", "gemma3_text", "phi3", "smollm3", "granite",
                                 "olmo", "olmo2", "cohere", "starcoder2_llama", "deepseek_v2", "exaone4",
                                 "hunyuan_v1_dense", "ministral", "seed_oss", "glm", "glm4", "helium")},
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "starcoder2": ["q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"],
}


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class TrainResult:
    run_id: str
    run_dir: Path
    output_dir: Path | None      # adapter/ or model/; None when stopped before the end
    step: int
    max_steps: int
    final_loss: float | None
    final_eval_loss: float | None
    first_loss: float | None
    cancelled: bool
    elapsed: float               # seconds of training, all sessions of the run together
    tokens_per_second: float     # this session
    peak_memory_mb: float
    train_rows: int
    validation_rows: int
    truncated: int


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str                  # running | stopped | interrupted | finished | failed | unknown
    step: int
    max_steps: int
    final_loss: float | None
    final_eval_loss: float | None
    created: str                 # ISO 8601, UTC
    method: str
    path: Path
    output_dir: Path | None

    @property
    def resumable(self) -> bool:
        return self.status in ("stopped", "interrupted", "failed")


# ---------------------------------------------------------------- data

@dataclass
class RenderedRow:
    input_ids: list
    labels: list
    truncated: bool


def _render(tokenizer, messages: list, **kw) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kw)


def assistant_spans(tokenizer, messages: list) -> tuple[str, list[tuple[int, int]]]:
    """The chat-template text of `messages` and the character spans the assistant wrote (each turn's
    content and its end-of-turn marker, but not the role header the template puts before it)."""
    full = _render(tokenizer, messages)
    spans = []
    last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i == 0:
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = full if i == len(messages) - 1 else _render(tokenizer, messages[:i + 1])
        if full.startswith(upto) and upto.startswith(before):
            end = len(upto.rstrip())
            if end > len(before):
                spans.append((len(before), end))
        elif i == last_assistant and full.startswith(before):
            # Templates that rewrite earlier turns (e.g. dropping reasoning): train the last turn only.
            spans.append((len(before), len(full.rstrip())))
    return full, spans


def render_row(tokenizer, messages: list, max_length: int) -> RenderedRow | None:
    """Token ids and labels for one chat row: labels are the ids on assistant tokens, -100 elsewhere.
    Rows longer than max_length are cut at the end. None when no assistant token is left."""
    text, spans = assistant_spans(tokenizer, messages)
    if not spans:
        return None
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [tok if any(s <= start < e for s, e in spans) and end > start else IGNORE_INDEX
                  for tok, (start, end) in zip(ids, enc["offset_mapping"])]
    else:  # slow tokenizers: tokenize piece by piece
        ids, labels, pos = [], [], 0
        for start, end in spans:
            head = tokenizer(text[pos:start], add_special_tokens=False)["input_ids"]
            body = tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
            ids += head + body
            labels += [IGNORE_INDEX] * len(head) + body
            pos = end
        tail = tokenizer(text[pos:], add_special_tokens=False)["input_ids"]
        ids += tail
        labels += [IGNORE_INDEX] * len(tail)
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    if labels:
        labels[0] = IGNORE_INDEX      # nothing predicts a row's first token
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return RenderedRow(ids, labels, truncated)


def split_rows(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded validation split held out from the training rows (none when too few rows)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    count = int(round(len(rows) * fraction)) if fraction > 0 else 0
    if count and len(rows) - count < 1:
        count = 0
    held = set(order[:count])
    return ([r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held])


def data_hash(rows: list[dict]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row["messages"], ensure_ascii=False, sort_keys=True).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class RenderedData:
    train: list
    validation: list
    truncated: int
    dropped: int
    train_tokens: int
    label_tokens: int


def render_rows(tokenizer, train_rows: list[dict], validation_rows: list[dict], max_length: int
                ) -> RenderedData:
    out = {"train": [], "validation": []}
    truncated = dropped = tokens = label_tokens = 0
    for name, rows in (("train", train_rows), ("validation", validation_rows)):
        for row in rows:
            rendered = render_row(tokenizer, row["messages"], max_length)
            if rendered is None:
                dropped += 1
                continue
            truncated += rendered.truncated
            if name == "train":
                tokens += len(rendered.input_ids)
                label_tokens += sum(1 for x in rendered.labels if x != IGNORE_INDEX)
            out[name].append({"input_ids": rendered.input_ids, "labels": rendered.labels})
    return RenderedData(out["train"], out["validation"], truncated, dropped, tokens, label_tokens)


class Collator:
    """pack: a batch's rows become one padding-free sequence (core/packing.py): position ids restart at
    each row, so transformers keeps rows apart with a block-diagonal causal mask; with share_prefix,
    the rows' common prefix runs once and a 4-D mask keeps them apart. group / pad: right-padding with
    an attention mask."""

    def __init__(self, pad_id: int, mode: str = "pack", select_logits: bool = False, *,
                 share_prefix: bool = False, max_row_length: int | None = None):
        self.pad_id = pad_id
        self.mode = mode
        self.select_logits = select_logits
        self.share_prefix = share_prefix
        self.max_row_length = max_row_length

    def __call__(self, features: list[dict]) -> dict:
        import torch
        if self.mode == "pack":
            batch = pack(features, share_prefix=self.share_prefix, max_row_length=self.max_row_length)
        else:
            width = max(len(f["input_ids"]) for f in features)
            ids = [f["input_ids"] + [self.pad_id] * (width - len(f["input_ids"])) for f in features]
            labels = [f["labels"] + [IGNORE_INDEX] * (width - len(f["labels"])) for f in features]
            mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
            batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                     "attention_mask": torch.tensor(mask)}
        if self.select_logits:
            batch["logits_to_keep"] = predicting_positions(batch["labels"])
        return batch


def predicting_positions(labels):
    """Positions whose next token carries a label: the only places the LM head must run. Answers are
    short next to prompts, so skipping the rest saves most of the vocabulary projection."""
    return (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero().flatten()


def selected_logits_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy over logits computed only at `predicting_positions(labels)` (Trainer's
    compute_loss_func): the same value as the model's own shifted loss, for a fraction of the work."""
    import torch.nn.functional as F
    keep = predicting_positions(labels).to(labels.device)
    targets = labels[:, keep + 1]
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1).to(logits.device),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    if num_items_in_batch is None:
        count = (targets != IGNORE_INDEX).sum()
    else:
        count = num_items_in_batch
    if hasattr(count, "to"):
        count = count.to(loss.device)
    return loss / count


def supports_logits_to_keep(model) -> bool:
    import inspect
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


class _ListDataset:
    """A plain map-style dataset (torch's Dataset protocol: __len__ and __getitem__)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


# ---------------------------------------------------------------- config

def apply_overrides(config: ProjectConfig, overrides: dict | None) -> ProjectConfig:
    """Training settings changed for one run (CLI flags); validated like stillroom.toml itself."""
    if not overrides:
        return config
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    merged = dataclasses.replace(config, training=dataclasses.replace(config.training))
    for key, value in overrides.items():
        name = key.split(".", 1)[1] if key.startswith("training.") else key
        if name not in known:
            raise ConfigError(f"unknown training setting {key!r}; expected one of {', '.join(sorted(known))}")
        if value is not None:
            setattr(merged.training, name, value)
    return parse_config(render_toml(merged), "training overrides")


def compute_max_steps(cfg: TrainingConfig, train_rows: int, world_size: int = 1) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    batches = math.ceil(train_rows / (cfg.batch_size * world_size))
    per_epoch = max(1, math.ceil(batches / cfg.grad_accum))
    return max(1, math.ceil(per_epoch * cfg.epochs))


def lora_targets(model, cfg: TrainingConfig):
    if cfg.target_modules:
        return list(cfg.target_modules)
    model_type = getattr(model.config, "model_type", "")
    return LORA_TARGETS.get(model_type, "all-linear")


# ---------------------------------------------------------------- run folders

def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id(runs_dir: Path, method: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{method}"
    n = 2
    while (runs_dir / run_id).exists():
        run_id = f"{stamp}-{method}-{n}"
        n += 1
    return run_id


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (its trainer_state.json is written last)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        if path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX):
            try:
                step = int(path.name[len(CHECKPOINT_PREFIX):])
            except ValueError:
                continue
            if _read_json(path / "trainer_state.json") is not None:
                found.append((step, path))
    return max(found)[1] if found else None


def _checkpoint_step(path: Path | None) -> int:
    return int(path.name[len(CHECKPOINT_PREFIX):]) if path else 0


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text("utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _truncate_metrics(run_dir: Path, step: int) -> list[dict]:
    """Keep the lines up to `step` (the checkpoint a resumed run continues from)."""
    path = run_dir / "metrics.jsonl"
    repair_torn_tail(path)
    kept = [m for m in read_metrics(run_dir) if m.get("step", 0) <= step]
    atomic_write_jsonl(path, kept)
    return kept


def _run_status(state: dict) -> str:
    status = state.get("status", "unknown")
    if status == "running" and not process_alive(int(state.get("pid", 0) or 0), state.get("host", "")):
        return "interrupted"
    return status


def list_runs(project) -> list[RunSummary]:
    """Every run of the project, oldest first."""
    out = []
    for run_dir in project.run_dirs():
        config = _read_json(run_dir / "config.json") or {}
        state = _read_json(run_dir / "state.json") or {}
        if not config and not state:
            continue
        method = config.get("method") or config.get("config", {}).get("training", {}).get("method", "")
        output = run_dir / ("model" if method == "full" else "adapter")
        # config.json is written (atomically) before state.json: a run with the one but not the other
        # was stopped before its first state line, and resumes from step 0.
        status = _run_status(state) if state else ("interrupted" if config.get("config") else "unknown")
        step = state.get("step")
        if step is None:
            step = _checkpoint_step(last_checkpoint(run_dir))
        out.append(RunSummary(
            run_id=run_dir.name, status=status, step=int(step or 0),
            max_steps=int(state.get("max_steps") or config.get("max_steps") or 0),
            final_loss=state.get("final_loss"), final_eval_loss=state.get("final_eval_loss"),
            created=config.get("created") or state.get("started") or "", method=method, path=run_dir,
            output_dir=output if output.is_dir() else None))
    return out


def _pick_resume(project, resume) -> Path | None:
    if resume is None or resume is False:
        return None
    if resume is True or resume == "":
        runs = [r for r in list_runs(project) if r.resumable or r.status == "running"]
        if not runs:
            raise StillroomError(f"{project.runs_dir}: no stopped or interrupted run to resume",
                                 f"start a new run with: stillroom train {project.root}")
        run = runs[-1]
    else:
        run_dir = project.run_dir(str(resume))
        matches = [r for r in list_runs(project) if r.path == run_dir]
        if not matches:
            raise StillroomError(f"{run_dir}: not a training run (no config.json)")
        run = matches[0]
    if run.status == "finished":
        raise StillroomError(f"{run.path}: run {run.run_id} already finished at step {run.step}",
                             "start a new run instead of resuming")
    if run.status == "running":
        raise StillroomError(f"{run.path}: run {run.run_id} is still running in another process")
    return run.path


# ---------------------------------------------------------------- distributed

def _world() -> tuple[int, int]:
    """(rank, world size) from the environment accelerate/torchrun set, before torch is initialised."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _agree(value: Any, world_size: int, use_cpu: bool) -> Any:
    """Rank 0's value on every rank (the run id, the folder to resume)."""
    if world_size <= 1:
        return value
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list
    PartialState(cpu=use_cpu)
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _barrier(world_size: int) -> None:
    if world_size > 1:
        from accelerate import PartialState
        PartialState().wait_for_everyone()


def peak_memory_mb(device: str) -> float:
    import torch
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        import sys
        return rss / 2 ** 20 if sys.platform == "darwin" else rss / 1024
    except ImportError:  # pragma: no cover - Windows
        return 0.0


# ---------------------------------------------------------------- train

class _RunWriter:
    """Run files; every method is a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, active: bool):
        self.run_dir = run_dir
        self.active = active
        self.metrics = None
        self.state: dict = {}

    def open_metrics(self):
        if self.active:
            self.metrics = JsonlAppender(self.run_dir / "metrics.jsonl")

    def metric(self, line: dict) -> None:
        if self.metrics is not None:
            self.metrics.append(line)

    def set_state(self, **values) -> None:
        self.state.update(values, updated=_now_iso())
        if self.active:
            atomic_write_text(self.run_dir / "state.json", json.dumps(self.state, indent=1) + "\n")

    def close(self):
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None


def _make_callback(*, on_event: EventSink, cancel: threading.Event | None, writer: _RunWriter, run_id: str,
                   device: str, elapsed_before: float):
    from transformers import TrainerCallback

    class StillroomCallback(TrainerCallback):
        """Forwards Trainer progress to engine events and metrics.jsonl; honours the cancel event."""

        def __init__(self):
            self.started = time.monotonic()
            self.step0 = 0
            self.tokens0 = 0
            self.pending: dict | None = None
            self.cancelled = False
            self.last_loss: float | None = None
            self.first_loss: float | None = None
            self.last_eval: float | None = None
            self.tokens_per_second = 0.0

        # -- helpers
        def _elapsed(self) -> float:
            return elapsed_before + time.monotonic() - self.started

        def _speed(self, state) -> float:
            seconds = time.monotonic() - self.started
            tokens = (state.num_input_tokens_seen or 0) - self.tokens0
            return tokens / seconds if seconds > 0 else 0.0

        def _eta(self, state) -> float | None:
            done = state.global_step - self.step0
            if done <= 0:
                return None
            return (state.max_steps - state.global_step) * (time.monotonic() - self.started) / done

        def _emit(self, state, loss, lr):
            if state.is_world_process_zero:
                on_event(TrainStep(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch or 0.0,
                                   loss=loss, learning_rate=lr, tokens_per_second=self._speed(state),
                                   elapsed=self._elapsed(), eta=self._eta(state)))

        def _write(self, line: dict):
            if line is not None:
                writer.metric(line)

        def flush(self):
            self._write(self.pending)
            self.pending = None

        # -- Trainer hooks
        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            self.step0 = state.global_step
            self.tokens0 = state.num_input_tokens_seen or 0

        def _check_cancel(self, control) -> bool:
            if cancel is not None and cancel.is_set() and not self.cancelled:
                # Stop after this step; Trainer saves a checkpoint before it returns.
                self.cancelled = True
                control.should_training_stop = True
                control.should_save = True
            return self.cancelled

        def on_step_end(self, args, state, control, **kwargs):
            stop = self._check_cancel(control)
            if stop or state.global_step >= state.max_steps:
                control.should_log = True      # the last step's loss is always recorded
            if not control.should_log:
                self._emit(state, None, None)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                loss = float(logs["loss"])
                lr = logs.get("learning_rate")
                self.last_loss = loss
                if self.first_loss is None and self.step0 == 0:
                    self.first_loss = loss
                self.tokens_per_second = self._speed(state)
                line = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "loss": loss,
                        "eval_loss": None, "learning_rate": lr, "grad_norm": logs.get("grad_norm"),
                        "tokens_per_second": round(self.tokens_per_second, 2),
                        "elapsed": round(self._elapsed(), 3), "peak_memory_mb": round(peak_memory_mb(device), 1),
                        "tokens_seen": int(state.num_input_tokens_seen or 0)}
                self.flush()
                if control.should_evaluate:
                    self.pending = line            # eval loss of this step joins the same line
                else:
                    self._write(line)
                self._emit(state, loss, lr)
                writer.set_state(step=state.global_step, final_loss=loss)
                self._check_cancel(control)
            elif "eval_loss" in logs:
                eval_loss = float(logs["eval_loss"])
                self.last_eval = eval_loss
                if self.pending is not None and self.pending["step"] == state.global_step:
                    self.pending["eval_loss"] = eval_loss
                    self.flush()
                else:
                    self.flush()
                    self._write({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "loss": None,
                                 "eval_loss": eval_loss, "learning_rate": None, "grad_norm": None,
                                 "tokens_per_second": round(self._speed(state), 2),
                                 "elapsed": round(self._elapsed(), 3),
                                 "peak_memory_mb": round(peak_memory_mb(device), 1),
                                 "tokens_seen": int(state.num_input_tokens_seen or 0)})
                if state.is_world_process_zero:
                    on_event(EvalStep(step=state.global_step, eval_loss=eval_loss))
                writer.set_state(final_eval_loss=eval_loss)
                self._check_cancel(control)

        def on_save(self, args, state, control, **kwargs):
            self.flush()
            path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            writer.set_state(step=state.global_step, checkpoint=path.name)
            if state.is_world_process_zero:
                on_event(CheckpointSaved(step=state.global_step, path=str(path)))

        def on_train_end(self, args, state, control, **kwargs):
            self.flush()

    return StillroomCallback()


def train(project, *, on_event: EventSink = ignore, cancel: threading.Event | None = None,
          resume: str | None | bool = None, overrides: dict | None = None) -> TrainResult:
    """Fine-tune the project's student on its training rows; returns when done, stopped or failed.

    resume: None/False starts a new run; True continues the newest stopped or interrupted run; a run id
    continues that run. A resumed run keeps its own settings and rows and reaches the same final step.
    overrides: training settings for a new run (e.g. {"max_steps": 20, "method": "full"}).
    """
    on_event = on_event or ignore
    rank, world_size = _world()
    main = rank == 0

    # Every rank reads the same folders before rank 0 writes anything (it first waits for all ranks to
    # agree on the run folder), so every rank picks the same run to resume.
    resume_dir = _pick_resume(project, resume)
    if resume_dir is not None and overrides and any(v is not None for v in overrides.values()):
        raise ConfigError("a resumed run keeps the settings it started with; drop the setting flags or "
                          "start a new run")

    # Settings and rows: a resumed run reads its own; a new run takes the project's (plus overrides).
    if resume_dir is not None:
        saved = _read_json(resume_dir / "config.json")
        if not saved or "config" not in saved:
            raise StillroomError(f"{resume_dir / 'config.json'}: missing or unreadable; cannot resume this run")
        config = parse_config(_config_toml(saved["config"]), resume_dir / "config.json")
        data_rows = records.read_jsonl(resume_dir / "data.jsonl")
        train_rows = [{"messages": r["messages"]} for r in data_rows if r.get("split") == "train"]
        validation_rows = [{"messages": r["messages"]} for r in data_rows if r.get("split") == "validation"]
    else:
        config = apply_overrides(project.config, overrides)
        rows = project.training_rows()
        if not rows:
            raise DataError(f"{project.root}: no training rows (no kept generated rows"
                            f"{' and no seeds' if config.training.include_seeds else '; seeds are excluded'})",
                            f"generate rows first: stillroom generate {project.root} --count 100")
        train_rows, validation_rows = split_rows(rows, config.training.validation_fraction, config.training.seed)
    cfg = config.training

    from .student import load_student, pick_device, pick_precision, quiet_transformers, student_folder
    device = pick_device(cfg.device)
    precision = pick_precision(device, cfg.precision)

    on_event(Status("loading the student"))
    folder = student_folder(config.student.model, project_dir=project.root, on_event=on_event)
    quiet_transformers()
    import torch
    from transformers import Trainer, TrainingArguments, set_seed
    set_seed(cfg.seed)
    # LoRA on a GPU keeps the frozen base in bf16/fp16; full fine-tuning keeps fp32 master weights and
    # trains in autocast.
    from .student import torch_dtype
    load_dtype = torch_dtype(precision if (cfg.method == "lora" and device != "cpu") else "fp32")
    # Loaded on the CPU; Trainer moves it to this process's device (cuda:<local rank> under DDP).
    model, tokenizer = load_student(str(folder), project_dir=project.root, device="cpu", dtype=load_dtype,
                                    for_training=True, chat_template=config.student.chat_template or None,
                                    trust_remote_code=config.student.trust_remote_code)

    on_event(Status("rendering the training rows"))
    data = render_rows(tokenizer, train_rows, validation_rows, cfg.max_length)
    if not data.train:
        raise DataError(f"{project.root}: no training row has an assistant answer left after rendering "
                        f"({data.dropped} dropped)", "check the rows' messages and training.max_length")
    max_steps = compute_max_steps(cfg, len(data.train), world_size)
    # No KV cache while training: with one, transformers cannot see the row boundaries of a packed batch.
    model.config.use_cache = False
    batching = cfg.batching
    if batching == "pack" and not packing_isolates_rows(model, data.train):
        on_event(Status(f"{model.config.model_type}: this architecture does not keep packed rows apart; "
                        f"grouping rows by length instead"))
        batching = "group"
    share_prefix = batching == "pack" and shared_prefix_isolates_rows(model, data.train)
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=lora_targets(model, cfg), bias="none", task_type="CAUSAL_LM")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()

    # The run folder (made only once the student and the rows are ready): rank 0 names it, every
    # rank learns the name.
    if main:
        if resume_dir is not None:
            run_dir = resume_dir
        else:
            project.runs_dir.mkdir(parents=True, exist_ok=True)
            run_dir = project.runs_dir / new_run_id(project.runs_dir, cfg.method)
            run_dir.mkdir()
    else:
        run_dir = None
    run_dir = Path(_agree(str(run_dir) if run_dir else None, world_size, device == "cpu"))
    if resume_dir is not None and run_dir != resume_dir:
        raise StillroomError(f"{resume_dir}: the training processes disagree on the run to resume")
    run_id = run_dir.name

    checkpoint = last_checkpoint(run_dir) if resume_dir is not None else None
    start_step = _checkpoint_step(checkpoint)
    writer = _RunWriter(run_dir, main)
    elapsed_before = 0.0
    first_loss = last_loss = last_eval = None
    if main:
        if resume_dir is None:
            atomic_write_jsonl(run_dir / "data.jsonl",
                               [{"split": "train", **r} for r in train_rows]
                               + [{"split": "validation", **r} for r in validation_rows])
            atomic_write_text(run_dir / "config.json", json.dumps({
                "run_id": run_id, "created": _now_iso(), "method": cfg.method, "max_steps": max_steps,
                "config": config.to_dict(), "overrides": {k: v for k, v in (overrides or {}).items()
                                                          if v is not None},
                "student": {"ref": config.student.model, "folder": str(folder)},
                "data": {"hash": data_hash(train_rows + validation_rows), "train_rows": len(data.train),
                         "validation_rows": len(data.validation), "truncated": data.truncated,
                         "dropped": data.dropped, "train_tokens": data.train_tokens,
                         "train_label_tokens": data.label_tokens, "max_length": cfg.max_length},
                "device": device, "precision": precision, "world_size": world_size,
                "versions": _versions(),
            }, indent=1) + "\n")
            (run_dir / "metrics.jsonl").touch()
        else:
            kept = _truncate_metrics(run_dir, start_step)
            elapsed_before = float(kept[-1]["elapsed"]) if kept else 0.0
            first_loss = next((m["loss"] for m in kept if m.get("loss") is not None), None)
            # A session that trains no step (resumed at its last checkpoint) still reports the run's losses.
            last_loss = next((m["loss"] for m in reversed(kept) if m.get("loss") is not None), None)
            last_eval = next((m["eval_loss"] for m in reversed(kept) if m.get("eval_loss") is not None), None)
        writer.state = _read_json(run_dir / "state.json") or {}
        writer.set_state(status="running", step=start_step, max_steps=max_steps, pid=os.getpid(),
                         host=socket.gethostname(), started=writer.state.get("started") or _now_iso())
        writer.open_metrics()
    _barrier(world_size)

    on_event(TrainStarted(run_id=run_id, run_dir=str(run_dir), step=start_step, max_steps=max_steps,
                          train_rows=len(data.train), validation_rows=len(data.validation),
                          truncated=data.truncated, method=cfg.method, device=device, precision=precision,
                          world_size=world_size))

    evaluate = bool(data.validation)
    select_logits = supports_logits_to_keep(model)
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=int(math.ceil(cfg.warmup_ratio * max_steps)),
        lr_scheduler_type="cosine", max_steps=max_steps,
        logging_steps=cfg.logging_steps, logging_strategy="steps", logging_first_step=True,
        eval_strategy="steps" if evaluate else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        seed=cfg.seed, data_seed=cfg.seed, report_to="none", disable_tqdm=True, log_level="error",
        remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=device == "cpu", bf16=precision == "bf16", fp16=precision == "fp16",
        include_num_input_tokens_seen="all" if batching == "pack" else "non_padding",
        train_sampling_strategy="group_by_length" if batching == "group" else "random",
        ddp_find_unused_parameters=False,
        **_checkpointing_args(TrainingArguments, cfg.gradient_checkpointing),
    )
    callback = _make_callback(on_event=on_event, cancel=cancel, writer=writer, run_id=run_id, device=device,
                              elapsed_before=elapsed_before)
    callback.last_loss, callback.last_eval = last_loss, last_eval
    trainer = Trainer(model=model, args=args, train_dataset=_ListDataset(data.train),
                      eval_dataset=_ListDataset(data.validation) if evaluate else None,
                      data_collator=Collator(tokenizer.pad_token_id, batching, select_logits, share_prefix=share_prefix,
                                            max_row_length=_sliding_window(model)),
                      compute_loss_func=selected_logits_loss if select_logits else None,
                      processing_class=tokenizer, callbacks=[callback])
    # Progress goes through engine events only: no printed log dicts, no tqdm bars.
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)

    output_dir = None
    try:
        if cancel is not None and cancel.is_set():
            raise _StoppedBeforeStart()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            if checkpoint is not None and start_step >= max_steps:
                # Killed after the last checkpoint but before the final folder was published. Resumed
                # there, Trainer would run one step past max_steps: load the checkpoint and publish it.
                trainer._load_from_checkpoint(str(checkpoint))
                trainer.state.global_step = start_step
            else:
                trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        step = trainer.state.global_step
        if callback.cancelled:
            writer.set_state(status="stopped", step=step)
        else:
            output_dir = run_dir / ("model" if cfg.method == "full" else "adapter")
            partial = run_dir / f".{output_dir.name}.partial"
            if main:
                shutil.rmtree(partial, ignore_errors=True)
            _barrier(world_size)
            _base_config(model).use_cache = True      # the saved model generates with its cache
            trainer.save_model(str(partial))          # every rank calls it (FSDP / DeepSpeed gather)
            if main:
                tokenizer.save_pretrained(str(partial))
                # The final folder holds safetensors and JSON only (Trainer adds a pickled copy of its args).
                for name in ("training_args.bin",):
                    (partial / name).unlink(missing_ok=True)
                shutil.rmtree(output_dir, ignore_errors=True)
                os.replace(partial, output_dir)
                writer.set_state(status="finished", step=step, final_loss=callback.last_loss,
                                 final_eval_loss=callback.last_eval, output=output_dir.name)
            _barrier(world_size)
    except _StoppedBeforeStart:
        step = start_step
        callback.cancelled = True
        writer.set_state(status="stopped", step=step)
    except KeyboardInterrupt:
        writer.set_state(status="stopped")
        raise
    except BaseException as exc:
        writer.set_state(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        writer.close()

    elapsed = elapsed_before + (time.monotonic() - callback.started)
    peak = peak_memory_mb(device)
    if main:
        writer.set_state(elapsed=round(elapsed, 3), peak_memory_mb=round(peak, 1),
                         tokens_per_second=round(callback.tokens_per_second, 2))
    on_event(TrainFinished(run_id=run_id, step=step, max_steps=max_steps, final_loss=callback.last_loss,
                           output_dir=str(output_dir or run_dir), cancelled=callback.cancelled))
    del trainer
    return TrainResult(run_id=run_id, run_dir=run_dir, output_dir=output_dir, step=step, max_steps=max_steps,
                       final_loss=callback.last_loss, final_eval_loss=callback.last_eval,
                       first_loss=callback.first_loss if first_loss is None else first_loss,
                       cancelled=callback.cancelled, elapsed=elapsed,
                       tokens_per_second=callback.tokens_per_second, peak_memory_mb=peak,
                       train_rows=len(data.train), validation_rows=len(data.validation),
                       truncated=data.truncated)


def _base_config(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def _sliding_window(model) -> int | None:
    """The attention window of sliding-window layers (Gemma 3, Mistral, ...): longer rows are not
    packed around a shared prefix, since the 4-D mask would not limit their attention to it."""
    window = getattr(_base_config(model), "sliding_window", None)
    return int(window) if window else None


def _checkpointing_args(training_arguments_cls, enabled: bool) -> dict:
    """Activation checkpointing under whichever name this transformers version uses."""
    if not enabled:
        return {}
    names = {f.name for f in dataclasses.fields(training_arguments_cls)}
    kwargs = {"use_reentrant": False}
    if "activation_checkpointing" in names:
        return {"activation_checkpointing": True, "activation_checkpointing_kwargs": kwargs}
    return {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": kwargs}


class _StoppedBeforeStart(Exception):
    pass


def _config_toml(saved: dict) -> str:
    """A saved config dict back to TOML text (through the dataclasses, so it is validated again)."""
    from .config import ProjectConfig
    sections = {}
    for f in dataclasses.fields(ProjectConfig):
        cls = f.default_factory
        values = saved.get(f.name, {})
        known = {x.name for x in dataclasses.fields(cls)}
        sections[f.name] = cls(**{k: v for k, v in values.items() if k in known})
    return render_toml(ProjectConfig(**sections))


def _versions() -> dict:
    out = {}
    for name in ("torch", "transformers", "peft", "accelerate"):
        try:
            from importlib.metadata import version
            out[name] = version(name)
        except Exception:
            pass
    return out
