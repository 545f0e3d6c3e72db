"""Textual messages the app exchanges; engine events become these in `GenerationBridge`."""
from __future__ import annotations

import time
from typing import Callable

from textual.message import Message

from stillroom.core import events


class GenStatus(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class GenChunk(Message):
    """Teacher text streamed since the last chunk (tokens are batched, never posted one by one)."""

    def __init__(self, text: str, purpose: str, tokens: int = 1, index: int | None = None) -> None:
        super().__init__()
        self.text = text
        self.purpose = purpose
        self.index = index
        self.tokens = tokens


class GenCandidate(Message):
    def __init__(self, index: int, label: str | None) -> None:
        super().__init__()
        self.index = index
        self.label = label


class GenRow(Message):
    """A candidate finished: kept or rejected (with its reason)."""

    def __init__(self, row: dict, kept: bool) -> None:
        super().__init__()
        self.row = row
        self.kept = kept


class GenProgress(Message):
    """Counters; a newer one replaces an older one still waiting in the queue."""

    def __init__(self, progress: events.GenerationProgress) -> None:
        super().__init__()
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GenProgress)


class GenFinished(Message):
    def __init__(self, finished: events.GenerationFinished | None, error: BaseException | None = None) -> None:
        super().__init__()
        self.finished = finished
        self.error = error


class ProjectChanged(Message):
    """Seeds, test rows or settings changed on disk (screens refresh what they show)."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what


class GenerationBridge:
    """The engine's `on_event` for a generation worker: turns events into messages for `post`.

    Runs in the worker thread. Tokens are gathered and posted at most every `interval` seconds (and at
    every candidate boundary), so a fast teacher cannot flood the UI's message queue.
    """

    def __init__(self, post: Callable[[Message], object], interval: float = 0.05):
        self.post = post
        self.interval = interval
        self._buffer: list[str] = []
        self._purpose = ""
        self._index: int | None = None
        self._tokens = 0
        self._last = 0.0

    def flush(self) -> None:
        if self._buffer:
            self.post(GenChunk("".join(self._buffer), self._purpose, self._tokens, self._index))
            self._buffer = []
            self._tokens = 0
        self._last = time.monotonic()

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.TokenStreamed):
            if (event.purpose, event.index) != (self._purpose, self._index):
                self.flush()
                self._purpose, self._index = event.purpose, event.index
            self._buffer.append(event.text)
            self._tokens += event.tokens
            if time.monotonic() - self._last >= self.interval:
                self.flush()
            return
        self.flush()
        if isinstance(event, events.GenerationProgress):
            self.post(GenProgress(event))
        elif isinstance(event, events.CandidateStarted):
            self._purpose = ""
            self.post(GenCandidate(event.index, event.label))
        elif isinstance(event, events.ExampleAccepted):
            self.post(GenRow(event.row, True))
        elif isinstance(event, events.ExampleRejected):
            self.post(GenRow(event.row, False))
        elif isinstance(event, events.Status):
            self.post(GenStatus(event.message))
        elif isinstance(event, events.GenerationFinished):
            self.post(GenFinished(event))
