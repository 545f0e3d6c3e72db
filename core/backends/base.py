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


def choose_mode(model: TextModel, configured: str = "auto") -> str:
    """chat or completion: a base model (or one without a chat template) is driven by few-shot completion."""
    if configured in ("chat", "completion"):
        return configured
    if getattr(model, "is_base", False) or not model.supports_chat:
        return "completion"
    return "chat"
