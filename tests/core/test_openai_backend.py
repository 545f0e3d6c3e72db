"""The openai teacher backend against real llama-cpp-python servers on 127.0.0.1 (bundled SmolLM2)."""
import threading
import time

import pytest

from llama_server import LlamaServer, free_port, qa_project_on
from stillroom.core.backends.base import SamplingParams
from stillroom.core.config import TeacherConfig
from stillroom.core.errors import ModelError
from stillroom.core.models import bundled_path, resolve

pytestmark = pytest.mark.slow


def make_model(url, servers=(), sleep=None, **settings):
    from stillroom.core.backends.openai import OpenAIModel
    cfg = TeacherConfig(model=f"openai:{url}", model_name=settings.pop("model_name", "smollm2"),
                        servers=list(servers), **settings)
    return OpenAIModel(resolve(cfg.model), cfg, **({} if sleep is None else {"sleep": sleep}))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("servers")
    model = bundled_path("smollm2-135m-instruct")
    pair = [LlamaServer(model, log=folder / f"server{i}.log", threads=1) for i in range(2)]
    for server in pair:
        server.start()
    yield pair
    for server in pair:
        server.stop()


def test_streaming_chat_and_completion(servers):
    model = make_model(servers[0].url)
    pieces = []
    out = model.chat([{"role": "user", "content": "Say hello."}], SamplingParams(max_tokens=12),
                     on_token=pieces.append)
    assert out.text and "".join(pieces) == out.text and len(pieces) > 1
    assert out.completion_tokens > 0 and out.first_token_seconds is not None
    out = model.complete("1, 2, 3, 4,", SamplingParams(max_tokens=8, stop=("9",)))
    assert out.text.strip().startswith("5") and "9" not in out.text
    out = model.complete("1, 2, 3, 4,", SamplingParams(max_tokens=4))
    assert out.finish_reason == "length"
    # cancel mid-stream
    cancel = threading.Event()
    out = model.complete("Once upon a time", SamplingParams(max_tokens=200),
                         on_token=lambda _p: cancel.set(), cancel=cancel)
    assert out.finish_reason == "cancelled" and out.completion_tokens < 200
    model.close()


def test_concurrent_requests_round_robin_over_two_servers(servers):
    model = make_model(servers[0].url, servers=[servers[1].url], max_in_flight=4)
    assert model.max_concurrency == 4
    before = [s.log.read_text(errors="ignore").count("/v1/completions") for s in servers]
    results = [None] * 6

    def worker(i):
        results[i] = model.complete(f"Item {i}: the number after {i} is", SamplingParams(max_tokens=4))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None and r.text and r.finish_reason == "length" for r in results)
    time.sleep(0.5)
    after = [s.log.read_text(errors="ignore").count("/v1/completions") for s in servers]
    served = [a - b for a, b in zip(after, before)]
    assert served == [3, 3], served
    model.close()


def test_generation_against_two_servers(servers, tmp_path):
    from stillroom.core.generate import generate
    from stillroom.core.project import Project
    project = qa_project_on(tmp_path / "p", servers[0].url, servers=[servers[1].url], max_in_flight=2)
    result = generate(project, 2)
    assert result.kept == 2
    rows = Project.open(project.root).synthetic()
    assert [r["id"] for r in rows] == [f"syn-{i:06d}" for i in range(len(rows))]


def test_retry_after_the_server_restarts(tmp_path):
    server = LlamaServer(bundled_path("smollm2-135m-instruct"), threads=1).start()
    model = make_model(server.url, max_retries=8)
    assert model.complete("1, 2, 3,", SamplingParams(max_tokens=3)).text
    server.stop()
    result = {}

    def ask():
        try:
            result["out"] = model.complete("1, 2, 3,", SamplingParams(max_tokens=3))
        except Exception as exc:       # reported below
            result["error"] = exc
    thread = threading.Thread(target=ask)
    thread.start()
    time.sleep(1.0)                    # the first tries are refused
    assert thread.is_alive()
    server.start()
    thread.join(120)
    server.stop()
    assert "error" not in result, result.get("error")
    assert result["out"].text


def test_wrong_model_name_is_one_clear_error(servers):
    model = make_model(servers[0].url, model_name="llama-70b")
    with pytest.raises(ModelError, match=r"has no model 'llama-70b'; it serves 'smollm2'"):
        model.complete("hello", SamplingParams(max_tokens=2))


def test_unreachable_port_is_one_clear_error():
    sleeps = []
    model = make_model(f"http://127.0.0.1:{free_port()}/v1", max_retries=1, sleep=sleeps.append)
    with pytest.raises(ModelError, match=r"cannot reach the OpenAI-compatible server \(connection refused\)") as err:
        model.complete("hello", SamplingParams(max_tokens=2))
    assert "\n" not in err.value.one_line()
    assert sleeps == []                  # the first check fails fast: no backoff, no retries


def test_api_key_comes_from_the_named_variable(monkeypatch, servers):
    with pytest.raises(ModelError, match="STILLROOM_TEST_KEY"):
        make_model(servers[0].url, api_key_env="STILLROOM_TEST_KEY")
    monkeypatch.setenv("STILLROOM_TEST_KEY", "sk-secret-value")
    model = make_model(servers[0].url, api_key_env="STILLROOM_TEST_KEY")
    assert "sk-secret-value" not in repr(vars(model)).replace(repr(model._clients), "")
    from stillroom.core.config import ProjectConfig, render_toml
    cfg = ProjectConfig()
    cfg.teacher.api_key_env = "STILLROOM_TEST_KEY"
    assert "sk-secret-value" not in render_toml(cfg)


def test_generation_survives_a_server_started_with_its_defaults(tmp_path):
    """llama-cpp-python's server as users start it (no --interrupt_requests False) cuts a streaming answer
    short whenever another request arrives: with max_in_flight = 2 the run lowers to one request at a
    time, says so on its progress line and in its log, and finishes."""
    from clitools import run_cli
    from stillroom.core.project import Project
    with LlamaServer(bundled_path("smollm2-135m-instruct"), threads=1, interrupt_requests=None) as server:
        project = qa_project_on(tmp_path / "p", server.url, max_in_flight=2)
        out = run_cli("generate", project.root, "--count", "3", env={"COLUMNS": "400"}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "interrupts concurrent streams" in out.stderr
    assert "lowered to 1 request at a time" in (project.root / "data" / ".teacher.log").read_text()
    rows = Project.open(project.root).synthetic()
    assert sum(r["status"] == "kept" for r in rows) == 3
