"""Small frozen events that long engine operations report through `on_event`.

The TUI turns them into Textual messages, the CLI into progress bars; neither is known here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class Event:
    pass


EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default sink for callers that do not listen."""


@dataclass(frozen=True)
class Status(Event):
    """A human-readable phase change ("loading teacher", "indexing seeds")."""
    message: str


@dataclass(frozen=True)
class TokenStreamed(Event):
    text: str
    source: str = "teacher"      # which model / column the text belongs to
    purpose: str = ""            # "input", "label", "answer", "chat"
    index: Optional[int] = None  # the generation candidate it belongs to (K of them interleave)
    tokens: int = 1              # the teacher tokens it holds (a whole completion when K > 1)


@dataclass(frozen=True)
class ModelReady(Event):
    """A model is loaded and about to answer (`source`: its role or column)."""
    source: str
    name: str


@dataclass(frozen=True)
class CandidateStarted(Event):
    index: int
    label: Optional[str] = None


@dataclass(frozen=True)
class ExampleAccepted(Event):
    row: dict


@dataclass(frozen=True)
class ExampleRejected(Event):
    row: dict
    reason: str


@dataclass(frozen=True)
class GenerationProgress(Event):
    kept: int
    rejected: int
    target: int
    elapsed: float
    teacher_tokens: int
    tokens_per_second: float
    rejected_by_reason: dict = field(default_factory=dict)
    note: str = ""               # a standing remark on the run (the teacher's concurrency lowered)


@dataclass(frozen=True)
class GenerationFinished(Event):
    kept: int
    rejected: int
    target: int
    elapsed: float
    cancelled: bool


@dataclass(frozen=True)
class TrainStarted(Event):
    """Data rendered, student loaded: the run's shape before its first step."""
    run_id: str
    run_dir: str
    step: int                 # 0, or the checkpoint step a resumed run continues from
    max_steps: int
    train_rows: int
    validation_rows: int
    truncated: int            # rows cut to training.max_length tokens
    method: str               # "lora" | "full"
    device: str
    precision: str
    world_size: int = 1


@dataclass(frozen=True)
class TrainStep(Event):
    step: int
    max_steps: int
    epoch: float
    loss: Optional[float]
    learning_rate: Optional[float]
    tokens_per_second: float
    elapsed: float
    eta: Optional[float] = None


@dataclass(frozen=True)
class EvalStep(Event):
    step: int
    eval_loss: float


@dataclass(frozen=True)
class CheckpointSaved(Event):
    step: int
    path: str


@dataclass(frozen=True)
class TrainFinished(Event):
    run_id: str
    step: int
    max_steps: int
    final_loss: Optional[float]
    output_dir: str
    cancelled: bool


@dataclass(frozen=True)
class EvalProgress(Event):
    model: str          # "teacher" | "base" | "tuned" | ...
    done: int
    total: int


@dataclass(frozen=True)
class EvalFinished(Event):
    run_id: str
    metrics: dict


@dataclass(frozen=True)
class ExportProgress(Event):
    stage: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class ExportFinished(Event):
    format: str
    paths: tuple
    check: Optional[dict] = None


@dataclass(frozen=True)
class ImproveStep(Event):
    """A round of `stillroom improve` enters one of its steps (core.improve.STEPS)."""
    round: int
    step: str
    rounds: int = 0           # the rounds the loop was asked for


@dataclass(frozen=True)
class MistakesFound(Event):
    """Where the student disagrees with the teacher on a round's probe: the groups, largest first, each
    {"key", "size", "teacher", "student", "examples"}."""
    round: int
    probe: int                # probe inputs the student answered
    disagreements: int
    groups: list = field(default_factory=list)


@dataclass(frozen=True)
class RoundReport(Event):
    """What a finished round bought (core.improve's round report)."""
    report: dict
