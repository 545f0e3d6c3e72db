"""Side-by-side chat: one conversation, asked of several models, each in the way it understands.

Every column (teacher, tuned student, base student) keeps its own answers, so a follow-up question
reaches each model with the history *it* wrote. A model is asked the way generation and evaluation ask
it (core.prompts): an instruct model gets chat messages; a base model a few-shot completion prompt in
which earlier turns of the conversation become further worked examples after the seeds. The students
see no seed shots in chat mode, as in training: the task's system prompt and the conversation only.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional, Sequence

from . import records
from .backends.base import Completion, SamplingParams, TextModel, choose_mode
from .config import TaskConfig
from .prompts import Prompter, Request, ask

COLUMNS = ("teacher", "tuned", "base")


@dataclass
class Exchange:
    user: str
    answers: dict = field(default_factory=dict)      # column -> answer text (absent: not answered)


@dataclass
class ModelSlot:
    """How one column's model is asked: its prompting mode and whether seed shots are shown."""
    column: str
    mode: str                  # "chat" | "completion"
    shots: bool                # few-shot seeds in front (teachers always; students in completion mode)


def slot_for(column: str, model: TextModel, configured_mode: str = "auto") -> ModelSlot:
    mode = choose_mode(model, configured_mode if column == "teacher" else "auto")
    return ModelSlot(column, mode, shots=column == "teacher" or mode == "completion")


class Conversation:
    """The exchanges so far; `request` builds what one column's model is asked for the latest input."""

    def __init__(self, task: TaskConfig, shots: Sequence[dict] = (), system_prompt: Optional[str] = None):
        self.task = task
        self.shots = list(shots)
        self.system_prompt = task.system_prompt if system_prompt is None else system_prompt
        self.exchanges: list[Exchange] = []

    def __len__(self) -> int:
        return len(self.exchanges)

    def to_json(self) -> dict:
        """What a model in another process needs to answer: shots, system prompt and exchanges."""
        return {"shots": self.shots, "system_prompt": self.system_prompt,
                "exchanges": [{"user": x.user, "answers": dict(x.answers)} for x in self.exchanges]}

    @classmethod
    def from_json(cls, task: TaskConfig, data: dict) -> "Conversation":
        conversation = cls(task, data.get("shots", ()), data.get("system_prompt"))
        conversation.exchanges = [Exchange(x["user"], dict(x.get("answers", {}))) for x in data.get("exchanges", [])]
        return conversation

    def ask(self, text: str) -> Exchange:
        text = text.strip()
        if not text:
            raise ValueError("empty message")
        exchange = Exchange(text)
        self.exchanges.append(exchange)
        return exchange

    def record(self, column: str, text: str) -> None:
        """The answer `column` gave to the latest input."""
        if self.exchanges:
            self.exchanges[-1].answers[column] = text.strip()

    def clear(self) -> None:
        self.exchanges.clear()

    def history(self, column: str) -> list[tuple[str, str]]:
        """(user, answer) pairs before the latest input that `column` answered."""
        return [(x.user, x.answers[column]) for x in self.exchanges[:-1] if x.answers.get(column)]

    def request(self, slot: ModelSlot) -> Request:
        if not self.exchanges:
            raise ValueError("nothing asked yet")
        text = self.exchanges[-1].user
        history = self.history(slot.column)
        if slot.shots:
            worked = self.shots + [records.make_row(u, a, "") for u, a in history]
            return Prompter(self.task, slot.mode).answer(worked, text, self.system_prompt)
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        for user, answer in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": text})
        return Request("chat", messages=tuple(messages))


def respond(model: TextModel, conversation: Conversation, slot: ModelSlot, params: SamplingParams, *,
            on_token=None, cancel: Optional[threading.Event] = None) -> Completion:
    """Ask `model` the latest input of `conversation`, stream its answer, and record it."""
    completion = ask(model, conversation.request(slot), params, on_token=on_token, cancel=cancel)
    conversation.record(slot.column, completion.text)
    return completion
