"""Fine-tuning the student on the kept rows: LoRA or full SFT with transformers.Trainer, live events,
cancel, and resume from the last checkpoint. The run folder is core.runs, the rows as token ids and the
loss are core.sft_data, device, precision and the processes of a run are core.device, and progress
leaves Trainer through core.train_callback.

Several processes: `accelerate launch --num_processes N [--cpu] -m stillroom.tui train PATH` runs the
same run with Trainer's distributed data parallel; rank 0 chooses the run id and alone writes run files.

torch, transformers and peft are imported inside functions.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from .config import ProjectConfig, TrainingConfig, parse_config, render_toml
from .device import agree, barrier, peak_memory_mb, pick_device, pick_precision, torch_dtype, world
from .errors import ConfigError, DataError, StillroomError
from .events import EventSink, Status, TrainFinished, TrainStarted, ignore
from .packing import packing_isolates_rows, shared_prefix_isolates_rows
from .runs import (RunHistory, RunWriter, checkpoint_step, last_checkpoint, new_run_id, now_iso, pick_resume,
                   read_json, read_run_inputs, rewind_metrics, write_new_run)
from .sft_data import (Collator, ListDataset, RenderedData, data_hash, render_rows, selected_logits_loss,
                       split_rows, supports_logits_to_keep)
from .trackers import check_trackers, report_to, tracker_settings

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


# ---------------------------------------------------------------- settings

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


# ---------------------------------------------------------------- train

@dataclass
class _Session:
    """This process's part of one run: where it writes, and where it starts from."""
    run_dir: Path
    main: bool                   # rank 0: the one process that writes the run's files
    world_size: int
    device: str
    precision: str
    max_steps: int
    checkpoint: Path | None      # the checkpoint a resumed run continues from
    history: RunHistory          # what earlier sessions of the run recorded
    writer: RunWriter

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def start_step(self) -> int:
        return checkpoint_step(self.checkpoint)


def train(project, *, on_event: EventSink = ignore, cancel: threading.Event | None = None,
          resume: str | None | bool = None, overrides: dict | None = None,
          start_adapter: str | Path | None = None) -> TrainResult:
    """Fine-tune the project's student on its training rows; returns when done, stopped or failed.

    resume: None/False starts a new run; True continues the newest stopped or interrupted run; a run id
    continues that run. A resumed run keeps its own settings and rows and reaches the same final step.
    overrides: training settings for a new run (e.g. {"max_steps": 20, "method": "full"}).
    start_adapter: a LoRA adapter folder a new run continues training from instead of a fresh adapter
    (recorded in config.json, so a resumed run starts from it too).
    """
    on_event = on_event or ignore
    rank, world_size = world()
    # Every rank reads the same folders before rank 0 writes anything (it first waits for all ranks to
    # agree on the run folder), so every rank picks the same run to resume.
    resume_dir = pick_resume(project, resume)
    if resume_dir is not None and overrides and any(v is not None for v in overrides.values()):
        raise ConfigError("a resumed run keeps the settings it started with; drop the setting flags or "
                          "start a new run")
    config, train_rows, validation_rows = _settings_and_rows(project, resume_dir, overrides)
    if resume_dir is not None:
        start_adapter = (read_json(resume_dir / "config.json") or {}).get("start_adapter")
    cfg = config.training
    check_trackers(cfg.report_to)           # a missing tracker package fails before the student loads
    device = pick_device(cfg.device)
    precision = pick_precision(device, cfg.precision, training=True)

    model, tokenizer, folder = _load_student(project, config, device, precision, on_event)
    if cfg.objective == "logits":
        from .logit_distill import attach_targets
        attach_targets(project, tokenizer, train_rows + validation_rows, fresh=resume_dir is None,
                       on_event=on_event)
    on_event(Status("rendering the training rows"))
    data = render_rows(tokenizer, train_rows, validation_rows, cfg.max_length,
                       extra=_objective_fields(config, tokenizer, train_rows + validation_rows, project.root))
    logit_targets = None
    if cfg.objective == "logits":
        from .logit_distill import line_up_rows
        logit_targets = line_up_rows(data, cfg.max_length, on_event)
    if not data.train:
        raise DataError(f"{project.root}: no training row has an assistant answer left after rendering "
                        f"({data.dropped} dropped)", "check the rows' messages and training.max_length")
    model, batching, share_prefix = _prepare_model(model, cfg, data, on_event, start_adapter)

    run_dir = _run_folder(project, resume_dir, cfg.method, rank == 0, world_size, device)
    session = _Session(run_dir=run_dir, main=rank == 0, world_size=world_size, device=device,
                       precision=precision, max_steps=compute_max_steps(cfg, len(data.train), world_size),
                       checkpoint=last_checkpoint(run_dir) if resume_dir is not None else None,
                       history=RunHistory(), writer=RunWriter(run_dir, rank == 0))
    if session.main:
        _begin_session(session, None if resume_dir is not None else (
            train_rows, validation_rows, _run_info(session, config, overrides, folder, data,
                                                   train_rows + validation_rows, start_adapter)))
    if session.main and logit_targets is not None:
        session.writer.set_state(logit_targets=logit_targets)     # rows distilled, fallen back, without
    barrier(world_size)
    on_event(TrainStarted(run_id=session.run_id, run_dir=str(run_dir), step=session.start_step,
                          max_steps=session.max_steps, train_rows=len(data.train),
                          validation_rows=len(data.validation), truncated=data.truncated, method=cfg.method,
                          device=device, precision=precision, world_size=world_size))

    from .train_callback import StillroomCallback
    callback = StillroomCallback(on_event=on_event, cancel=cancel, writer=session.writer, device=device,
                                 history=session.history)
    with tracker_settings(cfg.report_to, session.run_dir):
        trainer = _make_trainer(model, tokenizer, data, cfg, session, batching, share_prefix, callback)
    output_dir, step = _run_trainer(trainer, model, tokenizer, session, callback, cancel, cfg.method)

    elapsed = callback.elapsed()
    peak = peak_memory_mb(device)
    if session.main:
        session.writer.set_state(elapsed=round(elapsed, 3), peak_memory_mb=round(peak, 1),
                                 tokens_per_second=round(callback.tokens_per_second, 2))
    on_event(TrainFinished(run_id=session.run_id, step=step, max_steps=session.max_steps,
                           final_loss=callback.last_loss, output_dir=str(output_dir or run_dir),
                           cancelled=callback.cancelled))
    del trainer
    first_loss = session.history.first_loss
    return TrainResult(run_id=session.run_id, run_dir=run_dir, output_dir=output_dir, step=step,
                       max_steps=session.max_steps, final_loss=callback.last_loss,
                       final_eval_loss=callback.last_eval,
                       first_loss=callback.first_loss if first_loss is None else first_loss,
                       cancelled=callback.cancelled, elapsed=elapsed,
                       tokens_per_second=callback.tokens_per_second, peak_memory_mb=peak,
                       train_rows=len(data.train), validation_rows=len(data.validation),
                       truncated=data.truncated)


# ---------------------------------------------------------------- the phases of train()

def _settings_and_rows(project, resume_dir: Path | None, overrides: dict | None
                       ) -> tuple[ProjectConfig, list[dict], list[dict]]:
    """A resumed run reads its own settings and rows; a new run takes the project's (plus overrides)
    and splits off its validation rows."""
    if resume_dir is not None:
        return read_run_inputs(resume_dir)
    config = apply_overrides(project.config, overrides)
    rows = project.training_rows()
    if not rows:
        raise DataError(f"{project.root}: no training rows (no kept generated rows"
                        f"{' and no seeds' if config.training.include_seeds else '; seeds are excluded'})",
                        f"generate rows first: stillroom generate {project.root} --count 100")
    train_rows, validation_rows = split_rows(rows, config.training.validation_fraction, config.training.seed)
    return config, train_rows, validation_rows


def _load_student(project, config: ProjectConfig, device: str, precision: str, on_event: EventSink):
    """(model, tokenizer, folder), the model on the CPU: Trainer moves it to this process's device
    (cuda:<local rank> under DDP)."""
    from .student import load_student, quiet_transformers, student_folder
    cfg = config.training
    on_event(Status("loading the student"))
    folder = student_folder(config.student.model, project_dir=project.root, on_event=on_event)
    quiet_transformers()
    from transformers import set_seed
    set_seed(cfg.seed)
    # LoRA on a GPU keeps the frozen base in bf16/fp16. Full fine-tuning, and any training on the CPU,
    # keeps fp32 weights and trains in autocast (Trainer's bf16 with use_cpu: bf16 compute, fp32 master
    # weights).
    load_dtype = torch_dtype(precision if (cfg.method == "lora" and device != "cpu") else "fp32")
    model, tokenizer = load_student(str(folder), project_dir=project.root, device="cpu", dtype=load_dtype,
                                    for_training=True, chat_template=config.student.chat_template or None,
                                    trust_remote_code=config.student.trust_remote_code)
    return model, tokenizer, folder


def _prepare_model(model, cfg: TrainingConfig, data: RenderedData, on_event: EventSink,
                   start_adapter: str | Path | None = None):
    """(model, batching, share_prefix): the batching the model can honour, and the LoRA wrapper (a
    fresh adapter, or `start_adapter` trained further)."""
    # No KV cache while training: with one, transformers cannot see the row boundaries of a packed batch.
    model.config.use_cache = False
    batching = cfg.batching
    if batching == "pack" and not packing_isolates_rows(model, data.train):
        on_event(Status(f"{model.config.model_type}: this architecture does not keep packed rows apart; "
                        f"grouping rows by length instead"))
        batching = "group"
    share_prefix = batching == "pack" and shared_prefix_isolates_rows(model, data.train)
    if cfg.method == "lora" and start_adapter:
        from peft import PeftModel
        on_event(Status(f"continuing from the adapter in {start_adapter}"))
        model = PeftModel.from_pretrained(model, str(start_adapter), is_trainable=True)
    elif cfg.method == "lora":
        from peft import LoraConfig, get_peft_model
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=lora_targets(model, cfg), bias="none", task_type="CAUSAL_LM")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    return model, batching, share_prefix


def _run_folder(project, resume_dir: Path | None, method: str, main: bool, world_size: int,
                device: str) -> Path:
    """The run folder, made only once the student and the rows are ready: rank 0 names it (or takes
    the resumed one), every rank learns the name."""
    run_dir = None
    if main:
        if resume_dir is not None:
            run_dir = resume_dir
        else:
            project.runs_dir.mkdir(parents=True, exist_ok=True)
            run_dir = project.runs_dir / new_run_id(project.runs_dir, method)
            run_dir.mkdir()
    run_dir = Path(agree(str(run_dir) if run_dir else None, world_size, device == "cpu"))
    if resume_dir is not None and run_dir != resume_dir:
        raise StillroomError(f"{resume_dir}: the training processes disagree on the run to resume")
    return run_dir


def _run_info(session: _Session, config: ProjectConfig, overrides: dict | None, folder: Path,
              data: RenderedData, rows: list[dict], start_adapter: str | Path | None = None) -> dict:
    """A new run's config.json."""
    cfg = config.training
    return {
        **({"start_adapter": str(start_adapter)} if start_adapter else {}),
        "run_id": session.run_id, "created": now_iso(), "method": cfg.method, "max_steps": session.max_steps,
        "config": config.to_dict(), "overrides": {k: v for k, v in (overrides or {}).items() if v is not None},
        "student": {"ref": config.student.model, "folder": str(folder)},
        "data": {"hash": data_hash(rows), "train_rows": len(data.train),
                 "validation_rows": len(data.validation), "truncated": data.truncated,
                 "dropped": data.dropped, "train_tokens": data.train_tokens,
                 "train_label_tokens": data.label_tokens, "max_length": cfg.max_length},
        "device": session.device, "precision": session.precision, "world_size": session.world_size,
        "versions": _versions(),
    }


def _begin_session(session: _Session, new_run: tuple[list[dict], list[dict], dict] | None) -> None:
    """Rank 0's run files at the start of a session: a new run's rows and config.json (`new_run`:
    train rows, validation rows, config.json), or a resumed run's metrics cut back to its checkpoint;
    then state.json says running, and metrics.jsonl is open for appending."""
    if new_run is not None:
        write_new_run(session.run_dir, *new_run)
    else:
        session.history = rewind_metrics(session.run_dir, session.start_step)
    writer = session.writer
    writer.state = read_json(session.run_dir / "state.json") or {}
    writer.set_state(status="running", step=session.start_step, max_steps=session.max_steps, pid=os.getpid(),
                     host=socket.gethostname(), started=writer.state.get("started") or now_iso())
    writer.open_metrics()


def _make_trainer(model, tokenizer, data: RenderedData, cfg: TrainingConfig, session: _Session, batching: str,
                  share_prefix: bool, callback):
    from transformers import TrainingArguments
    evaluate = bool(data.validation)
    select_logits = supports_logits_to_keep(model)
    max_steps = session.max_steps
    args = TrainingArguments(
        output_dir=str(session.run_dir / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=int(math.ceil(cfg.warmup_ratio * max_steps)),
        lr_scheduler_type="cosine", max_steps=max_steps,
        logging_steps=cfg.logging_steps, logging_strategy="steps", logging_first_step=True,
        eval_strategy="steps" if evaluate else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        seed=cfg.seed, data_seed=cfg.seed, report_to=report_to(cfg.report_to), run_name=session.run_id,
        disable_tqdm=True, log_level="error",
        remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=session.device == "cpu", bf16=session.precision == "bf16", fp16=session.precision == "fp16",
        include_num_input_tokens_seen="all" if batching == "pack" else "non_padding",
        train_sampling_strategy="group_by_length" if batching == "group" else "random",
        ddp_find_unused_parameters=False,
        **_checkpointing_args(TrainingArguments, cfg.gradient_checkpointing),
    )
    collator = Collator(tokenizer.pad_token_id, batching, select_logits, share_prefix=share_prefix,
                        max_row_length=_sliding_window(model))
    if cfg.objective == "soft-labels":
        from .soft_labels import SoftLabelCollator
        collator = SoftLabelCollator(collator, tree=share_prefix)
    elif cfg.objective == "logits":
        from .logit_distill import DistillCollator
        collator = DistillCollator(collator)
    trainer = _trainer_class(cfg)(model=model, args=args, train_dataset=ListDataset(data.train),
                                  eval_dataset=ListDataset(data.validation) if evaluate else None,
                                  data_collator=collator,
                                  compute_loss_func=selected_logits_loss if select_logits else None,
                                  processing_class=tokenizer, callbacks=[callback])
    # Progress goes through engine events only: no printed log dicts, no tqdm bars.
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def _objective_fields(config: ProjectConfig, tokenizer, rows: list[dict], where):
    """What the training objective adds to each rendered row (render_rows' `extra`), after checking
    that the rows carry what it learns from; None for sft."""
    if config.training.objective == "soft-labels":
        from .soft_labels import check_rows, row_fields
        check_rows(rows, config.task.labels, where)
        return row_fields(tokenizer, config.task.labels, config.training.max_length)
    if config.training.objective == "logits":
        from .logit_distill import row_fields as logit_fields
        return logit_fields
    return None


def _trainer_class(cfg: TrainingConfig):
    """Trainer, with compute_loss dispatched on training.objective (sft: Trainer's own)."""
    from transformers import Trainer
    if cfg.objective == "sft":
        return Trainer

    class DistillationTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if cfg.objective == "soft-labels":
                from .soft_labels import compute_loss
                return compute_loss(self, model, inputs, return_outputs, num_items_in_batch, cfg)
            if cfg.objective == "logits":
                from .logit_distill import compute_loss
                return compute_loss(self, model, inputs, return_outputs, num_items_in_batch, cfg)
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                         num_items_in_batch=num_items_in_batch)

        def log(self, logs, *args, **kwargs):
            # The objective's loss parts (loss_ce, loss_kl) join the logged training loss.
            parts = getattr(self, "loss_parts", None)
            if parts is not None and "loss" in logs:
                logs.update(parts())
            super().log(logs, *args, **kwargs)
    return DistillationTrainer


def _run_trainer(trainer, model, tokenizer, session: _Session, callback, cancel: threading.Event | None,
                 method: str) -> tuple[Path | None, int]:
    """Train (or resume) to the end or the stop, publish the result, and record how the session ended
    in state.json. (output folder or None when stopped, step reached)."""
    writer = session.writer
    output_dir = None
    try:
        if cancel is not None and cancel.is_set():
            raise _StoppedBeforeStart()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            _train_from(trainer, model, session, method)
        step = trainer.state.global_step
        if callback.cancelled:
            writer.set_state(status="stopped", step=step)
        else:
            output_dir = _publish(trainer, model, tokenizer, session, method)
            if session.main:
                writer.set_state(status="finished", step=step, final_loss=callback.last_loss,
                                 final_eval_loss=callback.last_eval, output=output_dir.name)
            barrier(session.world_size)
    except _StoppedBeforeStart:
        step = session.start_step
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
    return output_dir, step


def _train_from(trainer, model, session: _Session, method: str) -> None:
    checkpoint = session.checkpoint
    if checkpoint is not None and session.start_step >= session.max_steps:
        # Killed after the last checkpoint but before the final folder was published. Resumed there,
        # Trainer would run one step past max_steps: load the checkpoint's weights and publish them.
        _load_weights(model, checkpoint, method)
        trainer.state.global_step = session.start_step
    else:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)


def _publish(trainer, model, tokenizer, session: _Session, method: str) -> Path:
    """The final adapter/ (or model/) folder with the tokenizer, written under a hidden name and renamed
    into place, so a kill never leaves a partial one under the final name."""
    output_dir = session.run_dir / ("model" if method == "full" else "adapter")
    partial = session.run_dir / f".{output_dir.name}.partial"
    if session.main:
        shutil.rmtree(partial, ignore_errors=True)
    barrier(session.world_size)
    _base_config(model).use_cache = True              # the saved model generates with its cache
    trainer.save_model(str(partial))                  # every rank calls it (FSDP / DeepSpeed gather)
    if session.main:
        tokenizer.save_pretrained(str(partial))
        # The final folder holds safetensors and JSON only (Trainer adds a pickled copy of its args).
        for name in ("training_args.bin",):
            (partial / name).unlink(missing_ok=True)
        shutil.rmtree(output_dir, ignore_errors=True)
        os.replace(partial, output_dir)
    return output_dir


def _load_weights(model, checkpoint: Path, method: str) -> None:
    """The trained weights of `checkpoint` into `model` (the LoRA adapter, or every weight of a full
    fine-tune), from its safetensors files; optimizer and scheduler state are not needed to publish."""
    from safetensors.torch import load_file
    if method == "lora":
        from peft import set_peft_model_state_dict
        result = set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
    else:
        files = sorted(checkpoint.glob("*.safetensors"))
        if not files:
            raise StillroomError(f"{checkpoint}: no safetensors weights in the checkpoint; cannot publish it")
        state: dict = {}
        for path in files:
            state.update(load_file(path))
        result = model.load_state_dict(state, strict=False)     # tied weights are saved once
    if result.unexpected_keys:
        raise StillroomError(f"{checkpoint}: weights that the student does not have "
                             f"({', '.join(result.unexpected_keys[:3])}); cannot publish this checkpoint")


# ---------------------------------------------------------------- helpers

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


def _versions() -> dict:
    out = {}
    for name in ("torch", "transformers", "peft", "accelerate"):
        try:
            from importlib.metadata import version
            out[name] = version(name)
        except Exception:
            pass
    return out
