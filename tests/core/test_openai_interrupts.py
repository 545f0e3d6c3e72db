"""A server that cuts a streaming answer short when another request arrives (as llama-cpp-python's
server does by default): the openai teacher lowers its requests in flight instead of failing, says
so, and names the cause when even one at a time is cut."""
import json
import logging
import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from fakes import FakeOpenAIServer
from stillroom.core.backends.base import SamplingParams, concurrency_limit, concurrency_note
from stillroom.core.config import TeacherConfig
from stillroom.core.errors import ModelError
from stillroom.core.models import resolve


class Interrupting(FakeOpenAIServer):
    """Streams a few pieces slowly; a newer request ends an older stream with [DONE] and no finish
    reason. `always_cut` cuts every stream after its first piece."""
    lock = threading.Lock()
    latest = 0
    served = 0
    cut = 0
    always_cut = False

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        cls = type(self)
        with cls.lock:
            cls.latest += 1
            cls.served += 1
            ticket, number = cls.latest, cls.served
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        words = ["Question", f"{number}", "about", _word(number), _word(number * 7), "?"]
        for i, word in enumerate(words):
            time.sleep(0.03)
            with cls.lock:
                interrupted = cls.latest != ticket or (cls.always_cut and i > 0)
                cls.cut += interrupted
            if interrupted:
                break
            finish = "stop" if i == len(words) - 1 else None
            delta = {"content": " " + word}
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if "prompt" in request:
                chunk = {"id": "c", "object": "text_completion", "created": 0, "model": "m",
                         "choices": [{"index": 0, "text": " " + word, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


def _word(n: int) -> str:
    vocab = ["otters", "kettles", "granite", "violins", "tides", "lanterns", "moss", "comets", "saffron",
             "ferries", "quartz", "orchards", "bellows", "glaciers", "pepper", "harbours", "looms"]
    return vocab[n % len(vocab)]


@pytest.fixture
def server():
    Interrupting.latest = Interrupting.served = Interrupting.cut = 0
    Interrupting.always_cut = False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Interrupting)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def make_model(url, **settings):
    from stillroom.core.backends.openai import OpenAIModel
    cfg = TeacherConfig(model=f"openai:{url}", model_name="m", **settings)
    return OpenAIModel(resolve(cfg.model), cfg, sleep=lambda _s: None)


def test_concurrent_answers_cut_short_lower_the_servers_concurrency(server, caplog):
    model = make_model(server, max_in_flight=2, max_retries=1)
    assert concurrency_limit(model) == 2 and concurrency_note(model) == ""
    results, errors = [None] * 4, []

    def ask(i):
        try:
            results[i] = model.complete(f"item {i}", SamplingParams(max_tokens=16))
        except ModelError as exc:
            errors.append(exc)
    with caplog.at_level(logging.WARNING, logger="stillroom.teacher"):
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    # One try left after the first is not enough to survive the cuts by retrying alone: the lowering did it.
    assert errors == [] and all(r.finish_reason == "stop" and r.text.endswith("?") for r in results)
    assert Interrupting.cut >= 1
    assert concurrency_limit(model) == 1
    assert "interrupts concurrent streams" in concurrency_note(model)
    assert "lowered to 1 request at a time" in caplog.text


def test_answers_cut_even_one_at_a_time_name_the_cause(server):
    Interrupting.always_cut = True
    model = make_model(server, max_in_flight=1, max_retries=2)
    with pytest.raises(ModelError) as err:
        model.chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=16))
    line = err.value.one_line()
    assert "no answer after 3 tries (the stream ended without a finish reason)" in line
    assert "--interrupt_requests False" in line and "another client" in line
    assert "is the server running" not in line


def test_generation_goes_on_with_fewer_requests_in_flight_and_says_so(server, tmp_path):
    from stillroom.core import events, records
    from stillroom.core.generate import generate
    from stillroom.core.project import Project
    project = Project.create(tmp_path / "p", "qa")
    cfg = project.config
    cfg.teacher.model, cfg.teacher.model_name, cfg.teacher.mode = f"openai:{server}", "m", "chat"
    cfg.teacher.max_in_flight, cfg.teacher.max_retries = 3, 1
    cfg.evaluation.test_fraction = 0.0
    project.save_config()
    project.save_seeds([records.make_row(q, a) for q, a in [("What is two plus two?", "Four."),
                                                             ("What colour is grass?", "Green."),
                                                             ("Where is Paris?", "France.")]])
    seen = []
    result = generate(Project.open(project.root), 4, on_event=seen.append)
    assert result.kept == 4 and not result.cancelled
    notes = [e.message for e in seen if isinstance(e, events.Status) and "interrupts concurrent" in e.message]
    assert notes, [e for e in seen if isinstance(e, events.Status)]
    progress = [e for e in seen if isinstance(e, events.GenerationProgress)]
    assert "interrupts concurrent streams" in progress[-1].note
    rows = Project.open(project.root).synthetic()
    assert [r["id"] for r in rows] == [records.synthetic_id(i) for i in range(len(rows))]
