"""The one way training progress leaves transformers.Trainer: a TrainerCallback that turns Trainer's
hooks into engine events and metrics.jsonl lines, and stops the run (after a checkpoint) when the
cancel event is set.

This module imports transformers at the top: core.train imports it only when a run starts.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from .device import peak_memory_mb
from .events import CheckpointSaved, EvalStep, EventSink, TrainStep
from .runs import CHECKPOINT_PREFIX, RunHistory, RunWriter


class StillroomCallback(TrainerCallback):
    """Forwards Trainer progress to engine events and metrics.jsonl; honours the cancel event.

    After the run: `cancelled`, `first_loss` (of this session, when it started at step 0), `last_loss`,
    `last_eval` (the run's, earlier sessions included) and `tokens_per_second` (this session)."""

    def __init__(self, *, on_event: EventSink, cancel: threading.Event | None, writer: RunWriter,
                 device: str, history: RunHistory):
        self.on_event = on_event
        self.cancel = cancel
        self.writer = writer
        self.device = device
        self.elapsed_before = history.elapsed
        self.started = time.monotonic()
        self.step0 = 0
        self.tokens0 = 0
        self.pending: dict | None = None
        self.cancelled = False
        self.last_loss: float | None = history.last_loss
        self.first_loss: float | None = None
        self.last_eval: float | None = history.last_eval_loss
        self.tokens_per_second = 0.0

    # -- measures
    def elapsed(self) -> float:
        """Seconds of training, all sessions of the run together."""
        return self.elapsed_before + time.monotonic() - self.started

    def _speed(self, state) -> float:
        seconds = time.monotonic() - self.started
        tokens = (state.num_input_tokens_seen or 0) - self.tokens0
        return tokens / seconds if seconds > 0 else 0.0

    def _eta(self, state) -> float | None:
        done = state.global_step - self.step0
        if done <= 0:
            return None
        return (state.max_steps - state.global_step) * (time.monotonic() - self.started) / done

    def _line(self, state, loss=None, eval_loss=None, lr=None, grad_norm=None, speed=None) -> dict:
        """One metrics.jsonl line."""
        return {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "loss": loss,
                "eval_loss": eval_loss, "learning_rate": lr, "grad_norm": grad_norm,
                "tokens_per_second": round(self._speed(state) if speed is None else speed, 2),
                "elapsed": round(self.elapsed(), 3), "peak_memory_mb": round(peak_memory_mb(self.device), 1),
                "tokens_seen": int(state.num_input_tokens_seen or 0)}

    # -- output
    def _emit(self, state, loss, lr):
        if state.is_world_process_zero:
            self.on_event(TrainStep(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch or 0.0,
                                    loss=loss, learning_rate=lr, tokens_per_second=self._speed(state),
                                    elapsed=self.elapsed(), eta=self._eta(state)))

    def _write(self, line: dict | None):
        if line is not None:
            self.writer.metric(line)

    def flush(self):
        self._write(self.pending)
        self.pending = None

    def _check_cancel(self, control) -> bool:
        if self.cancel is not None and self.cancel.is_set() and not self.cancelled:
            # Stop after this step; Trainer saves a checkpoint before it returns.
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = True
        return self.cancelled

    # -- Trainer hooks
    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()
        self.step0 = state.global_step
        self.tokens0 = state.num_input_tokens_seen or 0

    def on_step_end(self, args, state, control, **kwargs):
        stop = self._check_cancel(control)
        if stop or state.global_step >= state.max_steps:
            control.should_log = True      # the last step's loss is always recorded
        if not control.should_log:
            self._emit(state, None, None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self._log_loss(state, control, float(logs["loss"]), logs.get("learning_rate"), logs.get("grad_norm"),
                           {k: v for k, v in logs.items() if k.startswith("loss_")})
        elif "eval_loss" in logs:
            self._log_eval_loss(state, float(logs["eval_loss"]))
        else:
            return
        self._check_cancel(control)

    def _log_loss(self, state, control, loss: float, lr, grad_norm, parts: dict | None = None) -> None:
        self.last_loss = loss
        if self.first_loss is None and self.step0 == 0:
            self.first_loss = loss
        self.tokens_per_second = self._speed(state)
        line = self._line(state, loss=loss, lr=lr, grad_norm=grad_norm, speed=self.tokens_per_second)
        line.update(parts or {})          # a distillation objective's parts of the loss (loss_ce, loss_kl)
        self.flush()
        if control.should_evaluate:
            self.pending = line            # eval loss of this step joins the same line
        else:
            self._write(line)
        self._emit(state, loss, lr)
        self.writer.set_state(step=state.global_step, final_loss=loss)

    def _log_eval_loss(self, state, eval_loss: float) -> None:
        self.last_eval = eval_loss
        if self.pending is not None and self.pending["step"] == state.global_step:
            self.pending["eval_loss"] = eval_loss
            self.flush()
        else:
            self.flush()
            self._write(self._line(state, eval_loss=eval_loss))
        if state.is_world_process_zero:
            self.on_event(EvalStep(step=state.global_step, eval_loss=eval_loss))
        self.writer.set_state(final_eval_loss=eval_loss)

    def on_save(self, args, state, control, **kwargs):
        self.flush()
        path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        self.writer.set_state(step=state.global_step, checkpoint=path.name)
        if state.is_world_process_zero:
            self.on_event(CheckpointSaved(step=state.global_step, path=str(path)))

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()
