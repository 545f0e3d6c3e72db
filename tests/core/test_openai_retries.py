"""Retries, backoff, Retry-After and timeouts of the openai backend, against a scripted HTTP server."""
import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from fakes import FakeOpenAIServer
from stillroom.core.backends.base import SamplingParams
from stillroom.core.config import TeacherConfig
from stillroom.core.errors import ModelError
from stillroom.core.models import resolve


class Script(FakeOpenAIServer):
    plan: list = []          # per POST: 429, 503, "hang" or "ok"
    seen: list = []
    release = threading.Event()   # a "hang" answers nothing until the test is over

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        step = self.plan.pop(0) if self.plan else "ok"
        self.seen.append(step)
        if step == "hang":
            self.release.wait()
            return
        if isinstance(step, int):
            self.send_response(step)
            if step == 429:
                self.send_header("Retry-After", "2")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        pieces = (("Hel", None),) if step == "cut" else (("Hel", None), ("lo", "stop"))
        for piece, finish in pieces:
            chunk = {"id": "c", "object": "text_completion", "created": 0, "model": "m",
                     "choices": [{"index": 0, "text": piece, "finish_reason": finish, "logprobs": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Script.plan, Script.seen, Script.release = [], [], threading.Event()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    Script.release.set()
    httpd.shutdown()
    httpd.server_close()


def model(url, sleeps, **kw):
    from stillroom.core.backends.openai import OpenAIModel
    cfg = TeacherConfig(model=f"openai:{url}", model_name="m", **kw)
    return OpenAIModel(resolve(cfg.model), cfg, sleep=sleeps.append)


def test_429_and_5xx_are_retried_with_backoff_and_retry_after(server):
    Script.plan = [429, 503, 502]
    sleeps = []
    out = model(server, sleeps).complete("x", SamplingParams(max_tokens=4))
    assert out.text == "Hello" and Script.seen == [429, 503, 502, "ok"]
    assert len(sleeps) == 3
    assert sleeps[0] >= 2 * 0.75          # Retry-After: 2 honoured
    assert sleeps[2] > sleeps[1] * 1.2     # exponential


def test_gives_up_after_max_retries_with_one_line(server):
    Script.plan = [500] * 10
    sleeps = []
    with pytest.raises(ModelError, match=r"no answer after 3 tries \(.*500") as err:
        model(server, sleeps, max_retries=2).complete("x", SamplingParams(max_tokens=4))
    assert len(Script.seen) == 3 and "\n" not in err.value.one_line()


@pytest.mark.timeout(60)
def test_a_hung_request_times_out_and_is_retried(server):
    # the hung request never answers while the test runs: only the client's timeout gets past it
    Script.plan = ["hang"]
    sleeps = []
    out = model(server, sleeps, timeout=0.5).complete("x", SamplingParams(max_tokens=4))
    assert out.text == "Hello" and Script.seen == ["hang", "ok"]
    assert len(sleeps) == 1               # one backoff between the timed-out try and the retry


def test_a_bad_request_is_not_retried(server):
    Script.plan = [400]
    with pytest.raises(ModelError, match=r"rejected the request \(400\)"):
        model(server, []).complete("x", SamplingParams(max_tokens=4))
    assert Script.seen == [400]


def test_a_stream_cut_short_is_retried_or_reported(server):
    Script.plan = ["cut"]
    out = model(server, []).complete("x", SamplingParams(max_tokens=4))
    assert out.text == "Hello" and Script.seen == ["cut", "ok"]
    # text already streamed to the caller cannot be taken back: a clear error instead of a repeat
    Script.plan, Script.seen = ["cut"], []
    with pytest.raises(ModelError, match="broke off midway"):
        model(server, []).complete("x", SamplingParams(max_tokens=4), on_token=lambda piece: None)
