"""The protocol's optional capabilities and the shared stream-drain loop, without a model."""
import threading

import pytest

from fakes import FakeTeacher
from stillroom.core.backends.base import (AnswersBatches, BoundsConcurrency, ScoresContinuations,
                                          concurrency_limit, supports)
from stillroom.core.backends.streaming import drain, held_back


class Scorer(FakeTeacher):
    max_concurrency = 3

    def score_continuations(self, prompt, continuations):
        return [0.0 for _ in continuations]


class Forwarding:
    """A wrapper that forwards attribute access, as bench/generate.py's Recording does."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_capabilities_are_asked_not_probed():
    plain, scorer = FakeTeacher(), Scorer()
    assert not supports(plain, ScoresContinuations)
    assert supports(scorer, ScoresContinuations)
    assert not supports(scorer, AnswersBatches)
    assert supports(Forwarding(scorer), ScoresContinuations)
    assert supports(scorer, BoundsConcurrency) and concurrency_limit(scorer) == 3
    assert concurrency_limit(Forwarding(scorer)) == 3
    assert concurrency_limit(plain) is None
    with pytest.raises(TypeError):
        supports(scorer, int)


class Stream:
    def __init__(self, chunks):
        self.chunks = chunks
        self.closed = False

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed = True


def read(chunk):
    return None if chunk is None else chunk


def test_drain_streams_pieces_keeps_the_last_finish_reason_and_closes():
    stream = Stream([("Hel", None), None, ("", None), ("lo", "length")])
    seen, pieces = [], []
    out = drain(stream, read, seen.append, pieces=pieces)
    assert (out.text, out.finish_reason, seen, pieces) == ("Hello", "length", ["Hel", "lo"], ["Hel", "lo"])
    assert out.first_token_seconds is not None and stream.closed


def test_drain_stops_at_cancel_and_closes_on_error():
    cancel = threading.Event()
    out = drain(Stream([("a", None), ("b", None), ("c", "stop")]), read,
                lambda piece: cancel.set() if piece == "b" else None, cancel)
    assert (out.text, out.finish_reason) == ("ab", "cancelled")
    assert drain(Stream([]), read).finish_reason is None

    stream = Stream([("a", None), 42])
    with pytest.raises(TypeError):
        drain(stream, read)
    assert stream.closed


def test_held_back_is_the_longest_tail_that_may_begin_a_stop():
    assert held_back("answer\nTic", ["\nTicket:", "###"]) == 4
    assert held_back("answer #", ["\nTicket:", "###"]) == 1
    assert held_back("answer", ["\nTicket:"]) == 0
    assert held_back("abc", []) == 0
