"""Prompts for the teacher: writing new inputs and answering inputs, in chat or few-shot completion mode.

A base model sees plain "Name: value" few-shot blocks and continues them; an instruct model gets chat
messages. Generation, evaluation and chat all build their prompts here, so a model is always asked
the same way.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Optional, Sequence

from . import records
from .backends.base import Completion, SamplingParams, TextModel
from .config import TaskConfig
from .tasks import task_kind


@dataclass(frozen=True)
class Request:
    mode: str                          # "chat" | "completion"
    prompt: str = ""                   # completion mode
    messages: tuple = ()               # chat mode
    stop: tuple = ()

    @property
    def digest(self) -> str:
        body = self.prompt if self.mode == "completion" else json.dumps(self.messages, sort_keys=True)
        return hashlib.sha1(body.encode("utf-8")).hexdigest()[:12]


def ask(model: TextModel, request: Request, params: SamplingParams, on_token=None, cancel=None) -> Completion:
    params = SamplingParams(**{**params.__dict__, "stop": tuple(params.stop) + tuple(request.stop)})
    if request.mode == "chat":
        return model.chat(list(request.messages), params, on_token=on_token, cancel=cancel)
    return model.complete(request.prompt, params, on_token=on_token, cancel=cancel)


class Prompter:
    def __init__(self, task: TaskConfig, mode: str):
        self.task = task
        self.mode = mode
        self.inp = task.input_name or "Input"
        self.out = task.output_name or "Output"

    # ------------------------------------------------------------ header
    def _header(self, topic: str = "") -> str:
        text = self.task.description.strip() or "Examples of the task."
        rule = task_kind(self.task).answer_rule(self.out)
        if rule:
            text += f"\n{rule}"
        if topic:
            text += f"\nThe next {self.inp.lower()} is about: {topic}."
        return text

    def _system(self, row: Optional[dict] = None) -> str:
        if row is not None and records.system_text(row):
            return records.system_text(row)
        return self.task.system_prompt or self.task.description

    # ------------------------------------------------------------ answering an input
    def answer(self, shots: Sequence[dict], text: str, system: str = "") -> Request:
        """Ask the model to answer `text`, shown `shots` as worked examples."""
        if self.mode == "chat":
            messages = [{"role": "system", "content": system or self._system()}]
            for row in shots:
                messages.append({"role": "user", "content": records.user_text(row)})
                messages.append({"role": "assistant", "content": records.answer_text(row)})
            messages.append({"role": "user", "content": text})
            return Request("chat", messages=tuple(messages))
        blocks = [self._header()]
        for row in shots:
            blocks.append(f"{self.inp}: {records.one_line(records.user_text(row))}\n"
                          f"{self.out}: {records.answer_text(row)}")
        blocks.append(f"{self.inp}: {records.one_line(text)}\n{self.out}:")
        return Request("completion", prompt="\n\n".join(blocks),
                       stop=("\n\n", f"\n{self.inp}:"))

    # ------------------------------------------------------------ writing a new input
    def new_input(self, shots: Sequence[dict], label: str = "", topic: str = "") -> Request:
        """Ask the model for one new input (for `label`, when the task is classification)."""
        if self.mode == "chat":
            lines = [f"Here are examples of {self.inp.lower()}s with their {self.out.lower()}:", ""]
            for row in shots:
                lines.append(f"{self.inp}: {records.one_line(records.user_text(row))}")
                lines.append(f"{self.out}: {records.answer_text(row)}")
                lines.append("")
            ask_for = f"Write one new, realistic {self.inp.lower()}, different from the examples"
            if label:
                ask_for += f", whose {self.out.lower()} is \"{label}\""
            if topic:
                ask_for += f", about {topic}"
            lines.append(ask_for + f". Reply with the {self.inp.lower()} text only.")
            messages = ({"role": "system", "content": self.task.description or "You write examples."},
                        {"role": "user", "content": "\n".join(lines)})
            return Request("chat", messages=messages)
        blocks = [self._header(topic)]
        if label:
            # Label first, then the text: the base model writes a text that fits the label it just read.
            for row in shots:
                blocks.append(f"{self.out}: {records.answer_text(row)}\n"
                              f"{self.inp}: {records.one_line(records.user_text(row))}")
            blocks.append(f"{self.out}: {label}\n{self.inp}:")
        else:
            for row in shots:
                blocks.append(f"{self.inp}: {records.one_line(records.user_text(row))}")
            blocks.append(f"{self.inp}:")
        return Request("completion", prompt="\n\n".join(blocks),
                       stop=("\n", f"{self.out}:"))


def clean_input(text: str, input_name: str = "") -> str:
    """Trim what a model wrapped around a new input: quotes, a repeated 'Name:' prefix, whitespace."""
    text = text.strip()
    if input_name and text.lower().startswith(input_name.lower() + ":"):
        text = text[len(input_name) + 1:].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] == "“" and text[-1] == "”":
        text = text[1:-1].strip()
    return text
