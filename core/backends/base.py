"""The one protocol that teacher and student backends share, and its small value types."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence, runtime_checkable

TokenCallback = Callable[[str], None]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: tuple = ()
    seed: Optional[int] = None
    top_logprobs: int = 0          # >0: return the top-k log-probabilities of each generated token
    answers: tuple = ()            # the complete answers of a closed answer set (labels): decoding may
                                   # end once the text is one of them and no longer one starts with it,
                                   # or at the end of its first line


@dataclass
class Completion:
    text: str
    finish_reason: str = "stop"          # "stop" | "length" | "cancelled"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    first_token_seconds: Optional[float] = None
    top_logprobs: Optional[list] = field(default=None, repr=False)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


@runtime_checkable
class TextModel(Protocol):
    """What every backend offers. The optional capabilities below are offered by some backends only;
    callers ask `supports(model, ScoresContinuations)` (or `concurrency_limit(model)`), never probe."""

    name: str
    supports_chat: bool
    is_base: bool

    def chat(self, messages: Sequence[dict], params: SamplingParams,
             on_token: Optional[TokenCallback] = None,
             cancel: Optional[threading.Event] = None) -> Completion: ...

    def complete(self, prompt: str, params: SamplingParams,
                 on_token: Optional[TokenCallback] = None,
                 cancel: Optional[threading.Event] = None) -> Completion: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- optional capabilities

class ScoresContinuations(Protocol):
    """Teacher-forced scoring: used to label classification rows by the teacher's label distribution."""

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """The summed log-probability of each continuation after `prompt`."""
        ...


class ScoresAnswerTokens(Protocol):
    """Teacher-forced top-k log-probabilities over a known vocabulary: the targets of token-level
    logit distillation (core/teacher_topk.py)."""

    def answer_top_logprobs(self, context, answer: str, k: int):
        """A teacher_topk.TopK for `answer` after `context` (a chat's messages, or a completion prompt):
        the answer's token ids and the k most likely ids and log-probabilities at each of them."""
        ...

    def vocabulary(self):
        """The model's vocabulary.Vocabulary."""
        ...


class ScoresChatContinuations(Protocol):
    """Teacher-forced scoring after a chat: a chat teacher's label distribution for classification."""

    def score_chat_continuations(self, messages: Sequence[dict], continuations: Sequence[str]) -> list[float]:
        """The summed log-probability of each continuation as the assistant's answer to `messages`."""
        ...


class AnswersBatches(Protocol):
    """Several prompts or conversations decoded together: one Completion each, in order, each the same
    as the single call's answer (greedy)."""

    def chat_batch(self, conversations: Sequence[Sequence[dict]], params: SamplingParams,
                   cancel: Optional[threading.Event] = None) -> list[Completion]: ...

    def complete_batch(self, prompts: Sequence[str], params: SamplingParams,
                       cancel: Optional[threading.Event] = None) -> list[Completion]: ...


class BoundsConcurrency(Protocol):
    """How many requests callers should keep in flight at once (a batched engine's slots, a server's
    configured limit). It may fall while the model runs (a server that cuts concurrent streams), so
    callers read it again through `concurrency_limit(model)` rather than keep the first value."""

    max_concurrency: int


class ExplainsConcurrency(Protocol):
    """Why `max_concurrency` fell while the model ran, in one line ("" while it has not)."""

    concurrency_note: str


_MEMBERS: dict[type, tuple[str, ...]] = {
    ScoresContinuations: ("score_continuations",),
    ScoresChatContinuations: ("score_chat_continuations",),
    ScoresAnswerTokens: ("answer_top_logprobs", "vocabulary"),
    AnswersBatches: ("chat_batch", "complete_batch"),
    BoundsConcurrency: ("max_concurrency",),
    ExplainsConcurrency: ("concurrency_note",),
}


def supports(model: object, capability: type) -> bool:
    """Whether `model` offers an optional capability (one of the Protocols above).

    Members are looked up as a caller uses them, so a wrapper that forwards attribute access to a model
    (`__getattr__`) offers what the model offers; `isinstance` on a runtime-checkable Protocol does not
    see forwarded attributes from Python 3.12 on.
    """
    try:
        members = _MEMBERS[capability]
    except KeyError:
        raise TypeError(f"{capability!r} is not an optional TextModel capability") from None
    return all(getattr(model, name, None) is not None for name in members)


def concurrency_limit(model: object) -> Optional[int]:
    """The model's bound on requests in flight, or None when it sets none."""
    if not supports(model, BoundsConcurrency):
        return None
    return int(model.max_concurrency) or None


def concurrency_note(model: object) -> str:
    """Why the model's bound on requests in flight fell, or "" when it has not (or cannot)."""
    return str(model.concurrency_note) if supports(model, ExplainsConcurrency) else ""


def choose_mode(model: TextModel, configured: str = "auto") -> str:
    """chat or completion: a base model (or one without a chat template) is driven by few-shot completion."""
    if configured in ("chat", "completion"):
        return configured
    if getattr(model, "is_base", False) or not model.supports_chat:
        return "completion"
    return "chat"
