"""The one loop that drains a streamed answer (llama-cpp-python's iterator, an OpenAI-compatible stream).

Each backend says how to read one chunk of its stream (`read(chunk)` gives the text piece and the
finish reason it carries, or None for a chunk with no choice in it); the loop hands every piece to
`on_token` as it arrives, times the first one, stops at `cancel`, and always closes the stream.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

from .base import TokenCallback

ChunkReader = Callable[[object], Optional[tuple[str, Optional[str]]]]


@dataclass
class Drained:
    pieces: list[str]                 # the text pieces, in order, as streamed
    finish_reason: Optional[str]      # the last one a chunk gave, "cancelled", or None when none did
    seconds: float
    first_token_seconds: Optional[float]

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def drain(stream: Iterable, read: ChunkReader, on_token: Optional[TokenCallback] = None,
          cancel: Optional[threading.Event] = None, pieces: Optional[list[str]] = None) -> Drained:
    """Read `stream` to its end (or to `cancel`). `pieces`, when given, is filled as the text arrives, so
    a caller whose stream breaks off midway still knows what was already streamed."""
    pieces = [] if pieces is None else pieces
    start = time.perf_counter()
    first = None
    finish = None
    try:
        for chunk in stream:
            read_out = read(chunk)
            if read_out is None:
                continue
            piece, reason = read_out
            if piece:
                if first is None:
                    first = time.perf_counter() - start
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
            if reason:
                finish = reason
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return Drained(pieces, finish, time.perf_counter() - start, first)


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` may be the start of a stop string, so are not streamed
    until the next piece shows whether the stop string follows."""
    held = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                held = max(held, n)
                break
    return held
