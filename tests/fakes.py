"""Scripted teachers (and a fake OpenAI-compatible server) for engine tests where the model is not the point."""
from __future__ import annotations

import itertools
import json
import random
from http.server import BaseHTTPRequestHandler

from stillroom.core.backends.base import Completion, SamplingParams


class FakeTeacher:
    """Writes numbered, distinct inputs and answers with the label the prompt asked for.

    In completion mode the label of a new-input request is read from the prompt's last block; the
    answer to a labelling request is looked up from the texts it wrote (so labels agree), unless
    `disagree_every` makes every k-th answer wrong.
    """

    name = "fake-teacher"
    supports_chat = False
    is_base = True

    def __init__(self, labels=("billing", "shipping"), disagree_every: int = 0, delay: float = 0.0,
                 words=None, logprobs: bool = False):
        self.labels = list(labels)
        self.logprobs = logprobs        # answers carry top log-probabilities when asked, as a server's do
        self.disagree_every = disagree_every
        self.delay = delay
        self.counter = itertools.count()
        self.written: dict[str, str] = {}
        self.calls = 0
        self.words = words or ["invoice", "parcel", "refund", "tracking", "card", "courier", "charge",
                               "box", "payment", "delivery", "receipt", "address", "coupon", "van"]

    def _new_text(self, label: str, seed) -> str:
        rng = random.Random(seed)
        n = next(self.counter)
        body = " ".join(rng.choice(self.words) for _ in range(6))
        return f"Ticket {n} about {label}: {body} {rng.randint(0, 10**9)}"

    def complete(self, prompt: str, params: SamplingParams, on_token=None, cancel=None) -> Completion:
        import time
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        last = prompt.rsplit("\n\n", 1)[-1]
        lines = last.splitlines()
        if len(lines) == 2 and lines[1].rstrip().endswith(":") and lines[1].count(":") == 1 \
                and lines[0].split(":", 1)[0] != lines[1][:-1]:
            if lines[1].startswith(("Ticket", "Text", "Input", "Question")):
                # new input for the label in lines[0]
                label = lines[0].split(":", 1)[1].strip()
                text = self._new_text(label, params.seed)
                self.written[text] = label
            else:
                # answer: find the label we meant for this text
                text_line = lines[0].split(":", 1)[1].strip()
                label = self.written.get(text_line, self.labels[0])
                if self.disagree_every and self.calls % self.disagree_every == 0:
                    label = next(l for l in self.labels if l != label)
                text = " " + label
        else:
            text = self._new_text(self.labels[0], params.seed)
        for piece in text.split(" "):
            if on_token:
                on_token(piece + " ")
            if cancel is not None and cancel.is_set():
                return Completion(text, "cancelled", 10, 1, 0.001)
        return Completion(text, "stop", prompt_tokens=len(prompt) // 4, completion_tokens=len(text.split()),
                          seconds=0.001, top_logprobs=self._top_logprobs(text, params))

    def _top_logprobs(self, text: str, params: SamplingParams):
        """For an answer: 0.8 on the label given, the rest shared by the others, as one token each."""
        label = text.strip()
        if not (self.logprobs and params.top_logprobs and label in self.labels):
            return None
        import math
        rest = 0.2 / (len(self.labels) - 1)
        return [{" " + other: math.log(0.8 if other == label else rest) for other in self.labels}]

    def chat(self, messages, params, on_token=None, cancel=None):
        raise NotImplementedError


class FakeChatTeacher(FakeTeacher):
    """The fake teacher as a chat model that can score answers after a chat (as llama.cpp can): the
    label it answers gets log-probability log(0.6), every other label log(0.4 / (n - 1))."""

    supports_chat = True
    is_base = False

    def chat(self, messages, params, on_token=None, cancel=None):
        last = messages[-1]["content"]
        if messages[-1]["role"] == "user" and "Write one new" in last:
            label = last.split('is "', 1)[1].split('"', 1)[0] if 'is "' in last else self.labels[0]
            text = self._new_text(label, params.seed)
            self.written[text] = label
        else:
            text = self._chat_answer(last)
        self.calls += 1
        return Completion(text, "stop", prompt_tokens=10, completion_tokens=len(text.split()), seconds=0.001)

    def _chat_answer(self, text: str) -> str:
        label = self.written.get(text, self.labels[0])
        if self.disagree_every and self.calls % self.disagree_every == 0:
            label = next(l for l in self.labels if l != label)
        return label

    def score_chat_continuations(self, messages, continuations):
        import math
        answer = self.written.get(messages[-1]["content"], self.labels[0])
        rest = 0.4 / (len(continuations) - 1)
        return [math.log(0.6 if c == answer else rest) for c in continuations]

    def close(self):
        pass


class CrashingTeacher(FakeTeacher):
    """The fake teacher, whose process dies with SIGSEGV, as a native crash would, on its `crash_at`-th
    new input (counted over the rows already in the project, so a rerun gets past the crash point)."""

    def __init__(self, labels, crash_at: int):
        super().__init__(labels=labels, delay=0.02)
        self.crash_at = crash_at

    def complete(self, prompt, params, on_token=None, cancel=None):
        if self.calls >= self.crash_at:
            import os
            import signal
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().complete(prompt, params, on_token=on_token, cancel=cancel)


# Teacher factories by name ("fakes:fake_teacher"): jobs import them in their own process.

def fake_teacher(project):
    return FakeTeacher(labels=project.config.task.labels)


def slow_fake_teacher(project):
    return FakeTeacher(labels=project.config.task.labels, delay=0.05)


def slower_fake_teacher(project):
    return FakeTeacher(labels=project.config.task.labels, delay=0.1)


def crashing_teacher(project):
    """Crashes (SIGSEGV) after 10 teacher calls in its process, unless STILLROOM_TEST_NO_CRASH is set."""
    import os
    if os.environ.get("STILLROOM_TEST_NO_CRASH"):
        return FakeTeacher(labels=project.config.task.labels)
    return CrashingTeacher(project.config.task.labels, crash_at=10)


def broken_teacher(project):
    from stillroom.core.errors import StillroomError
    raise StillroomError("teacher.model: model not found", "point teacher.model at a .gguf file")


def teacher_crashing_at_once(project):
    """Crashes (SIGSEGV) on its first answer, unless STILLROOM_TEST_NO_CRASH is set."""
    import os
    if os.environ.get("STILLROOM_TEST_NO_CRASH"):
        return FakeTeacher(labels=project.config.task.labels)
    return CrashingTeacher(project.config.task.labels, crash_at=0)


class LabelTeacher:
    """A base-model teacher that answers the reference label of every input it knows. `calls` counts
    its answers; with `cache_identity` it says what it is, as a configured teacher does, so an
    evaluation may reuse its answers."""

    name = "oracle"
    supports_chat = False
    is_base = True

    def __init__(self, answers: dict, cache_identity=None):
        self.answers = answers
        self.calls = 0
        if cache_identity is not None:
            self.cache_identity = cache_identity

    def complete(self, prompt, params, on_token=None, cancel=None):
        self.calls += 1
        text = prompt.rsplit("\n\n", 1)[-1].split("\n", 1)[0].split(":", 1)[1].strip()
        return Completion(" " + self.answers.get(text, "billing"), "stop", 50, 1, 0.01)

    def chat(self, messages, params, on_token=None, cancel=None):
        raise NotImplementedError

    def close(self):
        pass


def label_teacher_for(project, cache_identity=None):
    """A LabelTeacher that knows every test row and seed of `project`."""
    from stillroom.core import records
    return LabelTeacher({" ".join(records.user_text(r).split()): records.answer_text(r)
                         for r in project.tests() + project.all_seeds()}, cache_identity)


class FakeOpenAIServer(BaseHTTPRequestHandler):
    """The part of an OpenAI-compatible server every fake shares: a quiet log and a model list with one
    model, "m". Subclasses answer POST (chat and completions) as their test needs."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_json({"object": "list", "data": [{"id": "m", "object": "model"}]})

    def send_json(self, payload: dict, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
