"""What Stillroom trusts and what it does not: templates, weights, remote code, paths."""
import json
import re
import secrets
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CODE = [p for folder in ("core", "tui", "themes") for p in (REPO / folder).rglob("*.py")]
EVIL = "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.popen('id').read() }}"


def test_llama_cpp_chat_templates_render_in_a_sandbox():
    from jinja2.exceptions import SecurityError
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    formatter = Jinja2ChatFormatter(template=EVIL, eos_token="</s>", bos_token="<s>")
    with pytest.raises(SecurityError):
        formatter(messages=[{"role": "user", "content": "hi"}])


@pytest.mark.slow
def test_llama_cpp_model_uses_the_gguf_template_through_that_formatter():
    from stillroom.core.backends.llamacpp import LlamaCppModel
    from stillroom.core.models import bundled_path
    model = LlamaCppModel(bundled_path("smollm2-135m-instruct"), n_ctx=256)
    try:
        assert model.supports_chat
        llm = model.llm
        # The GGUF's own template, registered by llama-cpp-python through Jinja2ChatFormatter (sandboxed).
        assert llm.chat_handler is None and llm.chat_format == "chat_template.default"
        assert "chat_template.default" in llm._chat_handlers
    finally:
        model.close()


def test_transformers_chat_templates_render_in_a_sandbox():
    from jinja2.exceptions import SecurityError
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "hi": 1}, "<unk>")),
                                  unk_token="<unk>")
    tok.chat_template = EVIL
    with pytest.raises(SecurityError):
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def _source_lines(pattern):
    hits = []
    for path in CODE:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line) and not line.lstrip().startswith("#"):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return hits


def test_no_unsafe_deserialisation_in_the_code():
    assert [h for h in _source_lines(r"\btorch\.load\(") if "weights_only=True" not in h] == []
    assert _source_lines(r"\bpickle\.loads?\(") == []
    assert _source_lines(r"use_safetensors\s*=\s*False") == []


def test_remote_code_only_from_the_config():
    # trust_remote_code is never hard-wired on; where it is passed it comes from the user's setting.
    assert _source_lines(r"trust_remote_code\s*=\s*True") == []


def test_chat_templates_are_rendered_by_the_libraries_not_by_a_raw_jinja_environment():
    assert _source_lines(r"jinja2\.(Environment|Template)\(|from jinja2 import .*\b(Environment|Template)\b") == []


# ---------------------------------------------------------------- API keys

KEY = "sk-stillroom-" + secrets.token_hex(16)
WRONG_KEY = "sk-wrong-" + secrets.token_hex(16)
KEY_ENV = "STILLROOM_TEST_API_KEY"


def _files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
            and secret.encode() in p.read_bytes()]


@pytest.fixture(scope="module")
def keyed_server():
    """llama-cpp-python's server answering only requests that carry KEY (its API_KEY setting)."""
    from llama_server import LlamaServer
    from stillroom.core.models import bundled_path
    real_urlopen = urllib.request.urlopen

    def urlopen(url, *args, **kwargs):      # the helper's readiness probe, with the key
        return real_urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"}),
                            *args, **kwargs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("API_KEY", KEY)
        patch.setattr(urllib.request, "urlopen", urlopen)
        server = LlamaServer(bundled_path("smollm2-135m-instruct"), threads=1).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_api_key_never_reaches_disk_logs_or_messages(tmp_path, monkeypatch, keyed_server):
    from clitools import run_cli
    from llama_server import qa_project_on
    monkeypatch.setenv("STILLROOM_CACHE_DIR", str(tmp_path / "cache-home"))   # data and config: conftest
    project = qa_project_on(tmp_path / "p", keyed_server.url, api_key_env=KEY_ENV, max_retries=1)

    outputs = []
    done = run_cli("generate", project.root, "--count", "2", env={KEY_ENV: KEY})
    outputs.append(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr
    assert len([r for r in project.synthetic() if r["status"] == "kept"]) == 2

    refused = run_cli("generate", project.root, "--count", "4", env={KEY_ENV: WRONG_KEY})
    outputs.append(refused.stdout + refused.stderr)
    assert refused.returncode == 2 and "refused the API key (401)" in refused.stderr

    project.config.teacher.model_name = "no-such-model"
    project.save_config()
    unknown = run_cli("generate", project.root, "--count", "4", env={KEY_ENV: KEY})
    outputs.append(unknown.stdout + unknown.stderr)
    assert unknown.returncode == 2 and "has no model 'no-such-model'" in unknown.stderr

    for secret in (KEY, WRONG_KEY):
        assert not [text for text in outputs if secret in text]
        # the project, the data, config and cache folders: everything the test gave Stillroom
        assert _files_holding(tmp_path, secret) == []


class _EchoingServer(BaseHTTPRequestHandler):
    """A server that quotes the request's key back in its error bodies (some APIs and proxies do)."""
    status = 400

    def log_message(self, *args):
        pass

    def _reply(self):
        body = json.dumps({"error": {"message": f"incorrect API key provided: {self.headers.get('Authorization')}"}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._reply()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply()


@pytest.mark.parametrize("status", [400, 500])
def test_error_messages_never_echo_the_api_key(monkeypatch, status):
    from stillroom.core.backends.base import SamplingParams
    from stillroom.core.backends.openai import OpenAIModel
    from stillroom.core.config import TeacherConfig
    from stillroom.core.errors import ModelError
    from stillroom.core.models import resolve
    handler = type("Handler", (_EchoingServer,), {"status": status})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv(KEY_ENV, KEY)
    cfg = TeacherConfig(model=f"openai:http://127.0.0.1:{httpd.server_port}/v1", model_name="m",
                        api_key_env=KEY_ENV, max_retries=1)
    model = OpenAIModel(resolve(cfg.model), cfg, sleep=lambda _s: None)
    try:
        with pytest.raises(ModelError) as error:
            model.chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=2))
    finally:
        model.close()
        httpd.shutdown()
    assert "incorrect API key provided" in error.value.one_line()    # the server's words do reach the user
    assert KEY not in error.value.one_line() and KEY not in repr(error.value)
